"""The cascade: speech-to-text → a text model → text-to-speech, as one ``ModelSession``."""
