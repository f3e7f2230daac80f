"""Alembic migrations of the registry database, run in code by :func:`modelyard.control.db.migrate`."""
