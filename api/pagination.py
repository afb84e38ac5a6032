"""Bounded paging parameters shared by every list endpoint.

An unbounded ``offset`` reached the database as a 64-bit integer: ``offset=9223372036854775808``
overflowed the driver (a 500). Every list route takes these annotated types instead, so a
number outside the bounds is a 422 naming the parameter before any query runs.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

#: The deepest a client may page; far beyond any real directory, far below 2**63.
MAX_OFFSET = 1_000_000_000

Offset = Annotated[
    int,
    Query(ge=0, le=MAX_OFFSET, description=f"Rows to skip (0 to {MAX_OFFSET:,})."),
]


#: The usual page limit (1 to 1,000).
Limit = Annotated[int, Query(ge=1, le=1000, description="Rows to return (1 to 1000).")]
#: The people directory's page limit (1 to 5,000).
PeopleLimit = Annotated[int, Query(ge=1, le=5000, description="Rows to return (1 to 5000).")]
