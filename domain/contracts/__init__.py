"""Workflow contracts (inputs, signals, updates, queries, activity requests), one module per family."""
