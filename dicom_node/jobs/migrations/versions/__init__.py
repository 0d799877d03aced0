"""Alembic revision scripts (a package so that a wheel install carries them)."""
