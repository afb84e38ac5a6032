"""Duly domain: ids, roles, kinds, statuses and one contracts module per family."""
