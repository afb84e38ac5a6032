"""Duly: training & certification compliance on durable Temporal workflows."""

__version__ = "0.1.0"
