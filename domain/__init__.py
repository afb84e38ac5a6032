"""Floor 1: ids, roles, kinds, statuses, calendar maths and one contracts module per family."""
