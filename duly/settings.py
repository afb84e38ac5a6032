"""Runtime configuration: one pydantic-settings class fed by ``DULY_*`` environment variables."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.bounds import MIN_DATE, DateWindow, InstantWindow, date_window, instant_window
from duly.keys import MIN_SECRET_LENGTH, KeyRing, load_or_create_key_file

#: The constant development secret of earlier versions. Refused in production; ignored elsewhere
#: (a random key is generated instead), because everyone knows it.
DEV_SECRET_KEY = "duly-dev-secret-change-me"

#: ``DULY_ENV=test`` without ``DULY_SECRET_KEY``: one random key per process, never written.
_PROCESS_TEST_KEY = secrets.token_urlsafe(48)


class Environment(StrEnum):
    """Where Duly runs; production enforces real secrets."""

    DEV = "dev"
    TEST = "test"
    PRODUCTION = "production"


class SettingsError(ValueError):
    """Raised when the configuration cannot be used; the message says which variable to fix."""


class Settings(BaseSettings):
    """All of Duly's configuration.

    Every field maps to an environment variable named ``DULY_<FIELD>`` (for example
    ``DULY_DATABASE_URL``). Secrets are :class:`SecretStr` so they never appear in ``repr`` or logs.
    """

    model_config = SettingsConfigDict(
        env_prefix="DULY_", env_file=None, extra="ignore", env_ignore_empty=True
    )

    env: Environment = Environment.DEV
    data_dir: Path = Field(default=Path(".duly"), description="Local state for `duly dev`.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; SQLite file under data_dir when unset. "
        "PostgreSQL: postgresql+psycopg://user:pass@host:5432/db",
    )

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "duly"
    temporal_ui_port: int = 8233

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_url: str | None = Field(
        default=None, description="Base URL used in links sent to people (defaults to the API)."
    )

    secret_key: SecretStr | None = Field(
        default=None,
        description="Master key; per-purpose keys (acknowledgement links, sign-in links) are "
        "derived from it with HKDF. Required in production; elsewhere generated into "
        "data_dir/secret_key (mode 0600) on first start.",
    )
    token_lifetime_days: int = Field(
        default=90,
        ge=1,
        le=3_650,
        description="Days a new person token (learner, manager, hr_admin, auditor) and, unless "
        "created with --no-expiry, a new integration token stays valid.",
    )
    token_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="Seconds an API process trusts a bearer token it has verified before asking "
        "the database again: a token revoked, or whose person is terminated, elsewhere (CLI, "
        "import, another API process) stops working within this time; a revocation through "
        "the process itself at once. 0 asks the database at every request.",
    )
    web_session_minutes: int = Field(
        default=480,
        ge=5,
        le=10_080,
        description="Minutes a browser session (the pages under /ui) lasts after sign-in.",
    )
    sign_in_link_minutes: int = Field(
        default=15,
        ge=1,
        le=1_440,
        description="Minutes an emailed one-time sign-in link stays valid.",
    )
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`json`: one JSON object per line (time, level, logger, message, and the "
        "workflow id, run id and activity name when logged from a workflow or an activity).",
    )

    # Observability (README "Observability"): all off by default.
    worker_metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65_535,
        description="Port `duly worker` serves Duly's own Prometheus metrics on (reminders, "
        "decisions, sweep duration); unset: not served.",
    )
    temporal_metrics_address: str | None = Field(
        default=None,
        description="host:port the Temporal SDK's Prometheus endpoint of `duly worker` binds "
        "(e.g. 0.0.0.0:9000: task latencies, slots, sticky cache, polls); unset: not served.",
    )
    worker_max_concurrent_workflow_tasks: int | None = Field(
        default=None,
        ge=1,
        le=1_000,
        description="Workflow tasks one `duly worker` runs at once (unset: the SDK's default, "
        "100). Lower it on a small or shared CPU: too many at once each outlast Temporal's 10 s "
        "workflow task timeout and are retried.",
    )
    worker_max_concurrent_activities: int = Field(
        default=16,
        ge=1,
        le=1_000,
        description="Activities one `duly worker` runs at once: the size of its activity thread "
        "pool (activities are synchronous SQLAlchemy and provider calls). Keep it at or below "
        "the database pool (10 + 10 overflow) per worker.",
    )
    worker_max_cached_workflows: int | None = Field(
        default=None,
        ge=0,
        le=1_000_000,
        description="Workflows one `duly worker` keeps in its sticky cache (unset: the SDK's "
        "default, 1,000; 0 disables the cache).",
    )
    worker_sandbox_reimport: bool = Field(
        default=False,
        description="Re-import Duly's workflow modules in every workflow run's sandbox (the "
        "SDK's default; each cached workflow then holds its own copy of them). Off: they pass "
        "through the sandbox, imported once per process (`bench/memory_where.py`).",
    )
    otel_enabled: bool = Field(
        default=False,
        description="Trace the API (FastAPI, SQLAlchemy) and workflows/activities (Temporal "
        "interceptor) with OpenTelemetry; needs the `otel` extra. Exporter settings are the "
        "standard OTEL_* variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME...).",
    )

    # Providers. A channel without credentials falls back to the outbox. The *_base_url settings
    # point the real SDKs elsewhere (tests use local fakes; a proxy or EU region in production).
    sendgrid_api_key: SecretStr | None = None
    sendgrid_from_email: str = "compliance@duly.example"
    sendgrid_base_url: str | None = None
    #: The "Verification Key" of SendGrid's Signed Event Webhook (base64 ECDSA public key).
    sendgrid_webhook_public_key: str | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from_number: str | None = None
    twilio_base_url: str | None = None
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_base_url: str | None = None
    #: Start a ``DirectoryChangeWorkflow`` for every directory change (joiners get what their
    #: pack says, leavers' obligations close); off: HR assigns by hand, as before.
    directory_automation: bool = True
    #: How long an early reminder waits for others of the same day to share one digest.
    digest_window_seconds: int = Field(default=600, ge=0, le=86_400)
    send_lease_seconds: int = Field(
        default=120,
        ge=5,
        le=3_600,
        description="How long an activity attempt holds a ledger row while it calls the "
        "provider; no other attempt sends that row meanwhile. Must exceed the slowest provider "
        "call (the SDK clients time out after 10 s); a crashed worker's rows are retried after it.",
    )
    held_retry_initial_seconds: int = Field(
        default=60,
        ge=1,
        le=86_400,
        description="First retry of a message held because a provider refused Duly's "
        "credentials; doubles on each attempt up to held_retry_max_seconds.",
    )
    held_retry_max_seconds: int = Field(
        default=3_600,
        ge=1,
        le=86_400,
        description="Longest wait between two retries of a held message.",
    )
    verify_rate_limit_per_minute: int = Field(
        default=30,
        ge=0,
        le=100_000,
        description="Requests per minute one client IP may make to the public "
        "`GET /verify/{code}` page (a sliding window per API process); 0 disables the limit.",
    )

    # Request limits (api/limits.py): applied before routing and authentication.
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="Largest request body (bytes) any route accepts, except the people import; "
        "larger is 413 before the body is read.",
    )
    max_import_bytes: int = Field(
        default=50 * 1024 * 1024,
        ge=1024,
        # The import route refuses more than 50 MiB itself (api/routers/people.py).
        le=50 * 1024 * 1024,
        description="Largest body (bytes) of `POST /people/import` (a 100,000-person CSV is "
        "about 15 MB); at most 50 MiB.",
    )
    rate_limit_per_token: str = Field(
        default="100/minute;1000/hour",
        description="Requests one bearer token may make (`limits` notation: N/second|minute|"
        "hour|day, several separated by ';'); `off` disables.",
    )
    rate_limit_anonymous: str = Field(
        default="300/minute;5000/hour",
        description="Requests one client IP may make without a token (ack pages, 401s, docs); "
        "health probes and signed provider webhooks are not counted; `off` disables.",
    )
    rate_limit_storage: str = Field(
        default="memory://",
        description="Where rate limit counters live: `memory://` (per API process) or a Redis "
        "URL (`redis://host:6379/0`, `rediss://…`) shared by every API process.",
    )

    # PostgreSQL session limits (store/db.py): no request waits on the database for ever.
    db_connect_timeout_seconds: int = Field(
        default=5,
        ge=1,
        le=300,
        description="Seconds to wait for a PostgreSQL connection before giving up "
        "(`/readyz` answers 503 then).",
    )
    db_statement_timeout_seconds: int = Field(
        default=30,
        ge=1,
        le=86_400,
        description="Longest one PostgreSQL statement may run before it is cancelled.",
    )
    db_lock_timeout_seconds: int = Field(
        default=10,
        ge=1,
        le=86_400,
        description="Longest one PostgreSQL statement may wait for a lock (row, table or "
        "advisory) before it fails.",
    )

    forwarded_allow_ips: str | None = Field(
        default=None,
        description="Reverse proxies (comma-separated IPs or networks) whose X-Forwarded-For "
        "`duly api` trusts for the client address; unset: forwarded headers are ignored.",
    )

    # Input bounds (see domain.bounds: the models carry absolute bounds, this is the window the
    # API, CLI and services check against today).
    due_date_past_years: int = Field(
        default=5,
        ge=0,
        le=50,
        description="Due and expiry dates (and completion evidence) may lie at most this many "
        "years before today.",
    )
    due_date_future_years: int = Field(
        default=10,
        ge=1,
        le=100,
        description="Due and expiry dates may lie at most this many years after today.",
    )
    xapi_openid_bases: str = Field(
        default="",
        max_length=2000,
        description="Comma-separated OpenID URI prefixes an xAPI actor's openid may start with; "
        "what follows the prefix is the person's external id. Empty: openid actors are "
        "dead-lettered.",
    )
    integrations_drop_root: Path | None = Field(
        default=None,
        description="The folder under which CSV-drop integrations may watch sub-folders "
        "(default: <DULY_DATA_DIR>/drops). A folder outside it is refused.",
    )
    integrations_sync_minutes: int = Field(
        default=60,
        ge=1,
        le=10_080,
        description="How often an integration's Temporal Schedule syncs it, unless its config "
        "gives every_minutes.",
    )
    clock_skew_seconds: int = Field(
        default=300,
        ge=0,
        le=86_400,
        description="Evidence (completion, start) may be timestamped at most this far in the "
        "future, for clocks that differ a little.",
    )

    @field_validator("rate_limit_per_token", "rate_limit_anonymous")
    @classmethod
    def _rate(cls, value: str, info: ValidationInfo) -> str:
        from limits import parse_many

        if value.strip().lower() in {"off", "none", "0", "false", "disabled"}:
            return value
        try:
            parse_many(value)
        except ValueError:
            raise ValueError(
                f"DULY_{(info.field_name or '').upper()}={value!r} is not a rate limit: write "
                "e.g. '100/minute;1000/hour' (N/second|minute|hour|day, separated by ';'), or "
                "'off'"
            ) from None
        return value

    @field_validator("rate_limit_storage")
    @classmethod
    def _storage(cls, value: str) -> str:
        scheme = value.strip().removeprefix("async+").split("://", 1)[0]
        if "://" not in value or scheme not in {
            "memory",
            "redis",
            "rediss",
            "redis+unix",
            "redis+sentinel",
            "redis+cluster",
        }:
            raise ValueError(
                f"DULY_RATE_LIMIT_STORAGE={value!r} is not supported: use memory:// or a Redis "
                "URL such as redis://127.0.0.1:6379/0"
            )
        return value.strip()

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.env is Environment.PRODUCTION:
            secret = self.secret_key.get_secret_value() if self.secret_key else ""
            if secret == DEV_SECRET_KEY or len(secret) < MIN_SECRET_LENGTH:
                raise SettingsError(
                    "DULY_SECRET_KEY is missing, is the development default, or is shorter than "
                    "32 characters; production refuses to start with it. Generate one with "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(48))'` and set "
                    "DULY_SECRET_KEY."
                )
            if self.database_url is None:
                raise SettingsError(
                    "DULY_DATABASE_URL must be set in production (for example "
                    "postgresql+psycopg://duly:secret@db:5432/duly); the embedded SQLite "
                    "default is for development only."
                )
        return self

    _key_ring: KeyRing | None = PrivateAttr(default=None)

    def key_ring(self) -> KeyRing:
        """The per-purpose keys (see :mod:`duly.keys`), resolved on first use.

        ``DULY_SECRET_KEY`` when set (production requires it). Otherwise, in ``dev``, a random
        key generated once into ``data_dir/secret_key`` (mode 0600) and reused on every start,
        so links sent before a restart keep working; in ``test``, a random key per process.
        The old constant development secret counts as unset outside production.
        """
        if self._key_ring is None:
            given = self.secret_key.get_secret_value() if self.secret_key else ""
            if given and given != DEV_SECRET_KEY:
                master = given
            elif self.env is Environment.TEST:
                master = _PROCESS_TEST_KEY
            else:
                master = load_or_create_key_file(self.data_dir)
            self._key_ring = KeyRing(master)
        return self._key_ring

    def due_date_window(self, today: date | None = None) -> DateWindow:
        """The due/expiry dates a caller may give, from ``today`` (default: today in UTC)."""
        window = date_window(
            today or datetime.now(UTC).date(),
            past_years=self.due_date_past_years,
            future_years=self.due_date_future_years,
        )
        return window.model_copy(
            update={"hint": f"{window.hint}; DULY_DUE_DATE_PAST_YEARS / DULY_DUE_DATE_FUTURE_YEARS"}
        )

    def evidence_window(self, now: datetime | None = None) -> InstantWindow:
        """The instants a completion or start may carry, from ``now`` (default: the clock)."""
        window = instant_window(
            now or datetime.now(UTC),
            past_years=self.due_date_past_years,
            skew_seconds=self.clock_skew_seconds,
        )
        return window.model_copy(update={"hint": f"{window.hint}; DULY_CLOCK_SKEW_SECONDS"})

    def past_date_window(self, today: date | None = None) -> DateWindow:
        """Dates of things that happened (issued, earned): not after today.

        One day of slack: a holder east of UTC may already be on tomorrow's date.
        """
        today = today or datetime.now(UTC).date()
        return DateWindow(
            earliest=MIN_DATE,
            latest=today + timedelta(days=1),
            hint="not in the future (today in UTC + 1 day for time zones ahead of UTC)",
        )

    @property
    def openid_bases(self) -> tuple[str, ...]:
        """The OpenID URI prefixes of :attr:`xapi_openid_bases`, in order."""
        return tuple(b.strip() for b in self.xapi_openid_bases.split(",") if b.strip())

    @property
    def drop_root(self) -> Path:
        """The folder CSV-drop integrations watch under."""
        return self.integrations_drop_root or self.data_dir / "drops"

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in :attr:`data_dir`."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'duly.db').resolve()}"

    @property
    def api_base_url(self) -> str:
        """The base URL people use to reach the API and pages."""
        return self.public_url or f"http://{self.api_host}:{self.api_port}"

    @property
    def temporal_ui_url(self) -> str:
        """The Temporal Web UI URL of the embedded dev server."""
        host = self.temporal_address.rsplit(":", 1)[0]
        return f"http://{host}:{self.temporal_ui_port}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return Settings()
