"""Workflow, signal, update, query and activity contracts, one module per family."""
