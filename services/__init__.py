"""Services per domain: keyword-only functions the API routers and the CLI both call.

They start, signal and query workflows and read the store (see ARCHITECTURE.md, floor 7).
"""
