"""Engine and session factory, configured from settings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from duly.settings import Settings

T = TypeVar("T")


@dataclass(frozen=True)
class Timeouts:
    """PostgreSQL session limits, in seconds (see the ``DULY_DB_*_TIMEOUT_SECONDS`` settings).

    0 disables a limit (PostgreSQL's own meaning of 0).

    Why: a request must never wait on the database for ever, for a connection, a slow
    statement or a lock another transaction holds.
    """

    connect: int = 5
    statement: int = 30
    lock: int = 10

    @classmethod
    def of(cls, settings: Settings) -> Timeouts:
        """The timeouts configured in ``settings``."""
        return cls(
            connect=settings.db_connect_timeout_seconds,
            statement=settings.db_statement_timeout_seconds,
            lock=settings.db_lock_timeout_seconds,
        )


#: A pooled connection used less than this many seconds ago is handed out without a ping.
PING_IDLE_SECONDS = 5.0

_LAST_USED = "duly_last_used"


#: Migrations may rewrite large tables: no statement timeout (0 disables it in PostgreSQL), but
#: they still give up on a lock they cannot get instead of queueing every query behind them.
MIGRATION_TIMEOUTS = Timeouts(statement=0)


def make_engine(url: str, timeouts: Timeouts | None = None) -> Engine:
    """Create an engine for ``url``.

    SQLite gets foreign keys on and a busy timeout; PostgreSQL gets ``connect_timeout``,
    ``statement_timeout`` and ``lock_timeout`` from ``timeouts`` (defaults when omitted).
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            # WAL lets the API read while the worker writes.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

        return engine
    limits = timeouts or Timeouts()
    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        connect_args = {
            "connect_timeout": limits.connect,
            # Server-side, per session: a statement (or its wait for a lock) that runs too long
            # is cancelled with an error rather than holding a connection and a thread.
            "options": f"-c statement_timeout={limits.statement * 1000}"
            f" -c lock_timeout={limits.lock * 1000}",
        }
    engine = create_engine(
        url,
        pool_size=10,
        max_overflow=10,
        # Waiting for a pooled connection is bounded too.
        pool_timeout=limits.statement or 30,
        connect_args=connect_args,
    )
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine, idle_seconds: float = PING_IDLE_SECONDS) -> None:
    """Ping a pooled connection on checkout only if it sat idle for ``idle_seconds`` or more.

    Why not ``pool_pre_ping``: it costs one round trip on every checkout, a third of a hot
    read's. A connection returned a moment ago is almost surely alive; one that sat in the pool
    (where a PostgreSQL restart, a failover or an idle timeout may have closed it) is pinged.
    If a trusted connection turns out dead anyway, its statement fails with a disconnect error,
    SQLAlchemy invalidates it and every connection the pool opened before it, and the request
    fails once (503 in the API); the next checkout gets a fresh connection.
    """
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _stamp(_dbapi_conn: Any, record: Any) -> None:
        # ``record.info`` belongs to the DBAPI connection: it is emptied when the connection
        # is invalidated or replaced, so a new connection starts unstamped (and unpinged).
        record.info[_LAST_USED] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        last_used = record.info.get(_LAST_USED)
        if last_used is None or time.monotonic() - last_used < idle_seconds:
            return
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as err:
            # As pool_pre_ping does: a dead connection means the server went away, so every
            # connection opened before now is discarded and the checkout retries with a new one.
            raise exc.InvalidatePoolError() from err


class Database:
    """An engine plus its session factory; one per process."""

    def __init__(self, url: str, timeouts: Timeouts | None = None) -> None:
        self.url = url
        self.timeouts = timeouts or Timeouts()
        self.engine = make_engine(url, self.timeouts)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        """The database ``settings`` names, with its configured timeouts."""
        return cls(settings.resolved_database_url, Timeouts.of(settings))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on error."""
        with self.sessionmaker() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


async def committed(session: Session, work: Callable[[], T]) -> T:
    """Run ``work`` (blocking database calls on ``session``) in a worker thread, then commit.

    For async code that also awaits Temporal: the event loop never blocks on the database, and
    the transaction (with any lock it took, such as the audit log's advisory lock) ends before
    the caller's next ``await``. On error the transaction is rolled back and the error re-raised.
    """

    def _run() -> T:
        try:
            result = work()
            session.commit()
        except BaseException:
            session.rollback()
            raise
        return result

    return await asyncio.to_thread(_run)


def run_read_only(session: Session, work: Callable[[], T]) -> T:
    """Run ``work`` (blocking reads on ``session``) without a transaction; see :func:`read_only`.

    For a caller already on a worker thread. The session holds no connection afterwards.
    """
    # Autocommit: each SELECT runs alone, with no BEGIN before it and no COMMIT after it (two
    # round trips saved). At READ COMMITTED (PostgreSQL's default, which Duly keeps) a
    # transaction gives a series of SELECTs nothing more: each statement takes its own snapshot
    # either way.
    # SQLite has no such level; there the work runs in an ordinary transaction.
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    try:
        return work()
    finally:
        session.rollback()  # nothing to undo: ends the session's use of the connection


async def read_only(session: Session, work: Callable[[], T]) -> T:
    """Like :func:`committed`, for work that only reads: no ``BEGIN``/``COMMIT`` round trips.

    For the hot read routes. ``work`` must not write (nor flush pending objects): on PostgreSQL
    its statements run in autocommit mode, each one on its own.
    """
    return await asyncio.to_thread(run_read_only, session, work)
