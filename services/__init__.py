"""Services: floor 7 of the layout (``ARCHITECTURE.md``, "Floors").

One module per domain. Each exposes keyword-only functions that read or write the store and
start, signal or query workflows; the API routers and the shell both call them. Services import
the floors below them and never ``api``.
"""
