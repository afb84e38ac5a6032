"""Temporal workflows: deterministic; they sleep, wait for signals and call activities."""
