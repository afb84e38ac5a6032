"""Services: floor 7 of the layout (``ARCHITECTURE.md``, "Floors").

One module per domain (assignments, certifications, people, obligations, bulk, acks, rules
deployment). Each exposes keyword-only functions that start, signal, update and query
workflows through typed references (``handle.signal(AssignmentWorkflow.complete, ...)``,
never a string name) and read or write the store. The API routers and the shell (CLI, dev
stack) both call them: a router maps a request to a service call and a
:class:`services.errors.ServiceError` to an HTTP status, and nothing else.

Services import the floors below them (domain, rules, store, notifications, activities,
workflows) and never ``api`` or another service's caller.
"""
