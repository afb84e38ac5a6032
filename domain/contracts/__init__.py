"""One contracts module per obligation family (plus what the families share).

Each holds the family's workflow input, signals, updates, query answers and activity requests:
the types both sides of a Temporal call agree on. ``obligation`` is what every family shares
(facts, the ladder's activity requests, :class:`~domain.contracts.obligation.ObligationMessages`);
``packs`` is the rules pack rollout. The pydantic data converter encodes them by field, not by
class path, so a model may move between modules without changing a recorded history.
"""
