"""The job store and audit trail (SQLAlchemy: SQLite by default, PostgreSQL supported)."""
