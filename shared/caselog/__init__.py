"""The immutable, hash-chained case event log in PostgreSQL."""
