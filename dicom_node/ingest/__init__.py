"""Receive: the pynetdicom SCP and STOW-RS ingest, atomic durable staging."""
