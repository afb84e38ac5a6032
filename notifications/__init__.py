"""Notifications: channel interface, providers, the outbox, Jinja2 templates and the ledger."""
