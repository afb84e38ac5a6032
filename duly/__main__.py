"""``python -m duly`` runs the CLI (the same as the ``duly`` console script)."""

from duly.cli import app

app(prog_name="duly")
