"""Database layer: declarative base, engine, tenant-scoped sessions and migrations."""
