"""Admin screens and the REST API."""
