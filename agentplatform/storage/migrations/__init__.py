"""Alembic migrations for the call-record database.

Every schema change is a revision in ``versions/``; ``storage/schema.py`` runs
them at server start and from ``agentplatform db upgrade``. A developer makes a
new revision with ``alembic -c agentplatform/storage/migrations/alembic.ini
revision --autogenerate -m "what changed"`` against a database at head, then
reads and trims what autogenerate wrote.
"""
