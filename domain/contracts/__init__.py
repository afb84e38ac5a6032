"""Workflow inputs, signals, updates, queries and activity requests, one module per family."""
