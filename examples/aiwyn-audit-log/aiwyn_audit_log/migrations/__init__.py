"""Alembic version files of the audit log's own table, found through the entry point group
``aiwyn_receiver.migrations``; their branch is labelled ``aiwyn_audit_log``."""
