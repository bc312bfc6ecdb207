"""Call records: SQLModel tables, a writer that never blocks the audio path, and
the read queries the API and admin screens use."""
