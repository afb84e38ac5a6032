"""Activities: every side effect a workflow causes (store writes, rule evaluation, sends)."""
