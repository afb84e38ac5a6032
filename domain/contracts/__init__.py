"""Workflow contracts (inputs, signals, updates, queries), one module per family."""
