"""HR rules packs (issue 3): YAML format, loader, lint and durable_rules evaluation.

Until a pack is deployed, obligations use the built-in 90/60/30/14/7/0 ladder
(:data:`domain.calendar.DEFAULT_LADDER_DAYS`) and the status function in :mod:`rules.builtin`.
"""
