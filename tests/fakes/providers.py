"""Local fakes of SendGrid, Twilio and Slack for the real SDKs to talk to.

Each fake is a tiny HTTP server on 127.0.0.1 (random free port, ``ThreadingHTTPServer`` in a
daemon thread) that answers the one or two endpoints Duly calls, in the provider's own shapes.

* ``received`` records every request (accepted or not); ``accepted`` only the ones answered with
  success. A slow request that eventually succeeds is accepted even if the client gave up
  waiting -- exactly like the real provider, which is why sends carry an idempotency key.
* Failure injection, consumed one per request in call order:
  ``fail_next(n, status=500)``, ``rate_limit_next(n, retry_after=1)``, ``permanent_next(n)``,
  ``reject_credentials_next(n)`` (the provider's own "bad API key / token" answer, as if the
  credential were revoked and later fixed) and ``slow_next(n, seconds)`` (a delay before
  answering; combines with the others). ``slow_all(seconds)`` delays every call.

Usage::

    with FakeSendGrid() as sg:
        client = SendGridEmail(api_key=sg.api_key, from_email="x@example.com", base_url=sg.base_url)
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class Recorded:
    """One request a fake received.

    Attributes:
        method: HTTP method.
        path: Request path without the query string.
        headers: Request headers, names lower-cased.
        body: Parsed body: a dict for JSON objects and forms, else the decoded text (or None).
        raw: The raw body bytes.
        query: Parsed query string.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes = b""
    query: dict[str, str] = field(default_factory=dict)

    @property
    def json(self) -> dict[str, Any]:
        """The body as a dict (empty when it was not a JSON object or form)."""
        return self.body if isinstance(self.body, dict) else {}


@dataclass(frozen=True)
class Reply:
    """What a fake answers."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
        """A JSON reply."""
        return cls(status, json.dumps(payload).encode(), dict(headers or {}))


@dataclass(frozen=True)
class _Fault:
    kind: str  # "fail" | "rate_limit" | "permanent" | "credentials"
    status: int = 500
    retry_after: float = 1
    options: dict[str, Any] = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeProvider

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is expected (slow_next); keep test output clean.
        return


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        recorded = Recorded(
            method=self.command,
            path=split.path,
            headers=headers,
            body=_parse_body(raw, headers.get("content-type", "")),
            raw=raw,
            query=dict(parse_qsl(split.query)),
        )
        reply = self.server.fake._dispatch(recorded)
        if reply is None:  # the fake is stopping
            return
        try:
            self.send_response(reply.status)
            if reply.body:
                self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if reply.body:
                self.wfile.write(reply.body)
        except OSError:  # the client gave up (timeout) before the answer
            pass

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


def _parse_body(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    if "json" in content_type or text[:1] in "{[":
        try:
            return json.loads(text)
        except ValueError:
            return text
    if "x-www-form-urlencoded" in content_type:
        return dict(parse_qsl(text, keep_blank_values=True))
    return text


class FakeProvider:
    """Base class: the server lifecycle, recording and failure injection."""

    name: ClassVar[str] = "fake"

    def __init__(self) -> None:
        self.received: list[Recorded] = []
        self.accepted: list[Recorded] = []
        self._faults: deque[_Fault] = deque()
        self._delays: deque[float] = deque()
        self._delay_all = 0.0
        self._hold_from: int | None = None
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> str:
        """Start serving on a free port; returns the base URL (``http://127.0.0.1:<port>``)."""
        if self._server is not None:
            return self.base_url
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"{self.name}-fake",
        )
        self._thread.start()
        host, port = server.server_address[:2]
        self.base_url = f"http://{host!s}:{port}"
        return self.base_url

    def stop(self) -> None:
        """Stop serving (releases requests still sleeping in ``slow_next``)."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- recording and injection -------------------------------------------------------------

    def reset(self) -> None:
        """Forget what was received and any pending failures."""
        with self._lock:
            self.received.clear()
            self.accepted.clear()
            self._faults.clear()
            self._delays.clear()
            self._delay_all = 0.0
            self._hold_from = None
        self._released.set()

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next ``n`` calls with ``status`` and a provider-shaped error body."""
        self._queue(n, _Fault("fail", status=status))

    def rate_limit_next(self, n: int = 1, retry_after: float = 1) -> None:
        """Answer the next ``n`` calls with 429 and ``Retry-After: <retry_after>``."""
        self._queue(n, _Fault("rate_limit", status=429, retry_after=retry_after))

    def permanent_next(self, n: int = 1) -> None:
        """Answer the next ``n`` calls with the provider's invalid-recipient error."""
        self._queue(n, _Fault("permanent"))

    def reject_credentials_next(self, n: int = 1) -> None:
        """Answer the next ``n`` calls as if Duly's API key or token were invalid."""
        self._queue(n, _Fault("credentials"))

    def slow_all(self, seconds: float) -> None:
        """Wait ``seconds`` before answering every call (after any ``slow_next`` delays)."""
        with self._lock:
            self._delay_all = seconds

    def slow_next(self, n: int = 1, seconds: float = 1.0) -> None:
        """Wait ``seconds`` before answering each of the next ``n`` calls."""
        with self._lock:
            self._delays.extend([seconds] * n)

    def hold_after(self, n: int) -> None:
        """Answer the next ``n`` calls, then hold every further one until :meth:`release`.

        For tests that must act while sends are provably in flight (a restart mid-ladder):
        unlike a delay, a hold does not depend on how fast the machine is.
        """
        with self._lock:
            self._hold_from = len(self.received) + n
            self._released.clear()

    def release(self) -> None:
        """Let calls held by :meth:`hold_after` (and any later ones) through."""
        with self._lock:
            self._hold_from = None
        self._released.set()

    def _queue(self, n: int, fault: _Fault) -> None:
        with self._lock:
            self._faults.extend([fault] * n)

    def _dispatch(self, req: Recorded) -> Reply | None:
        with self._lock:
            held = self._hold_from is not None and len(self.received) >= self._hold_from
            self.received.append(req)
            delay = self._delays.popleft() if self._delays else self._delay_all
        while held and not self._released.wait(0.05):
            if self._stopping.is_set():
                return None
        if delay and self._stopping.wait(delay):
            return None
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        if fault is not None:
            if fault.kind == "rate_limit":
                reply = self._rate_limited(req, fault.retry_after)
                retry = _format_seconds(fault.retry_after)
                return Reply(reply.status, reply.body, {"Retry-After": retry, **reply.headers})
            if fault.kind == "permanent":
                return self._permanent(req, **fault.options)
            if fault.kind == "credentials":
                return self._bad_credentials(req)
            return self._failed(req, fault.status)
        with self._lock:
            reply = self._answer(req)
            if 200 <= reply.status < 300 and not self._is_error_body(reply):
                self.accepted.append(req)
        return reply

    # -- provider shapes (subclasses) ----------------------------------------------------------

    def _answer(self, req: Recorded) -> Reply:
        raise NotImplementedError

    def _failed(self, req: Recorded, status: int) -> Reply:
        raise NotImplementedError

    def _rate_limited(self, req: Recorded, retry_after: float) -> Reply:
        return self._failed(req, 429)

    def _permanent(self, req: Recorded, **options: Any) -> Reply:
        raise NotImplementedError

    def _bad_credentials(self, req: Recorded) -> Reply:
        raise NotImplementedError

    def _is_error_body(self, reply: Reply) -> bool:
        return False


def _format_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _bearer(req: Recorded) -> str | None:
    auth = req.headers.get("authorization", "")
    return auth[7:] if auth.lower().startswith("bearer ") else None


# ---------------------------------------------------------------------------------------------
# SendGrid
# ---------------------------------------------------------------------------------------------


class FakeSendGrid(FakeProvider):
    """``POST /v3/mail/send`` → 202, empty body, ``X-Message-Id``; checks the Bearer API key."""

    name = "sendgrid"

    def __init__(self, api_key: str = "SG.fake-key.fake-secret") -> None:
        super().__init__()
        self.api_key = api_key
        #: X-Message-Id of each accepted message, in order.
        self.message_ids: list[str] = []

    @staticmethod
    def _errors(message: str, field_name: str | None = None) -> dict[str, Any]:
        return {"errors": [{"message": message, "field": field_name, "help": None}]}

    def _bad_credentials(self, req: Recorded) -> Reply:
        msg = "The provided authorization grant is invalid, expired, or revoked"
        return Reply.json(401, self._errors(msg))

    def _answer(self, req: Recorded) -> Reply:
        if _bearer(req) != self.api_key:
            return self._bad_credentials(req)
        if req.method != "POST" or req.path != "/v3/mail/send":
            return Reply.json(404, self._errors("Not Found"))
        if not isinstance(req.body, dict) or not req.body.get("personalizations"):
            msg = (
                "The personalizations field is required and must have at least one personalization."
            )
            return Reply.json(400, self._errors(msg, "personalizations"))
        message_id = uuid.uuid4().hex[:22]
        self.message_ids.append(message_id)
        return Reply(202, b"", {"X-Message-Id": message_id})

    def _failed(self, req: Recorded, status: int) -> Reply:
        messages = {429: "too many requests", 500: "internal error", 503: "service unavailable"}
        return Reply.json(status, self._errors(messages.get(status, f"error {status}")))

    def _rate_limited(self, req: Recorded, retry_after: float) -> Reply:
        reply = self._failed(req, 429)
        reset = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0"}
        return Reply(reply.status, reply.body, reset)

    def _permanent(self, req: Recorded, **options: Any) -> Reply:
        return Reply.json(
            400,
            {
                "errors": [
                    {
                        "message": "Does not contain a valid address.",
                        "field": "personalizations.0.to.0.email",
                    }
                ]
            },
        )


# ---------------------------------------------------------------------------------------------
# Twilio
# ---------------------------------------------------------------------------------------------

_TWILIO_ERRORS: dict[int, tuple[int, str]] = {
    # code: (HTTP status, message)
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource was not found"),
    20429: (429, "Too Many Requests"),
    20500: (500, "Internal Server Error"),
    20503: (503, "Service Unavailable"),
    21211: (400, "The 'To' number is not a valid phone number."),
    21408: (400, "Permission to send an SMS has not been enabled for the region indicated."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21612: (400, "The 'To' phone number is not currently reachable via SMS."),
    21614: (400, "'To' number is not a valid mobile number"),
}


class FakeTwilio(FakeProvider):
    """``POST /2010-04-01/Accounts/{Sid}/Messages.json`` (form) → 201 message JSON; basic auth."""

    name = "twilio"

    def __init__(
        self, account_sid: str = "AC" + "0" * 32, auth_token: str = "fake-auth-token"
    ) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token

    @staticmethod
    def error_body(
        code: int, status: int | None = None, message: str | None = None
    ) -> dict[str, Any]:
        """A Twilio REST error body."""
        known_status, known_message = _TWILIO_ERRORS.get(code, (status or 400, f"Error {code}"))
        return {
            "code": code,
            "message": message or known_message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status or known_status,
        }

    def _answer(self, req: Recorded) -> Reply:
        expected = (
            "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        )
        if req.headers.get("authorization") != expected:
            return self._bad_credentials(req)
        path = f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        if req.method != "POST" or req.path != path:
            return Reply.json(404, self.error_body(20404))
        form = req.json
        to, from_, body = form.get("To"), form.get("From"), form.get("Body", "")
        if not to:
            return Reply.json(400, self.error_body(21604, 400, "A 'To' phone number is required."))
        if not from_:
            msg = "A 'From' phone number is required."
            return Reply.json(400, self.error_body(21603, 400, msg))
        sid = "SM" + secrets.token_hex(16)
        now = formatdate(usegmt=True)
        segments = 1 if len(body) <= 160 else -(-len(body) // 153)
        return Reply.json(
            201,
            {
                "account_sid": self.account_sid,
                "api_version": "2010-04-01",
                "body": body,
                "date_created": now,
                "date_sent": None,
                "date_updated": now,
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": from_,
                "messaging_service_sid": None,
                "num_media": "0",
                "num_segments": str(segments),
                "price": None,
                "price_unit": "USD",
                "sid": sid,
                "status": "queued",
                "subresource_uris": {
                    "media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media.json"
                },
                "to": to,
                "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            },
        )

    def _bad_credentials(self, req: Recorded) -> Reply:
        return Reply.json(401, self.error_body(20003))

    def _failed(self, req: Recorded, status: int) -> Reply:
        code = {429: 20429, 500: 20500, 503: 20503}.get(status, 20000 + status)
        return Reply.json(status, self.error_body(code, status))

    def permanent_next(self, n: int = 1, code: int = 21211, message: str | None = None) -> None:
        """Answer the next ``n`` calls with Twilio error ``code`` (default 21211, invalid To)."""
        self._queue(n, _Fault("permanent", options={"code": code, "message": message}))

    def _permanent(self, req: Recorded, **options: Any) -> Reply:
        code = int(options.get("code", 21211))
        body = self.error_body(code, message=options.get("message"))
        return Reply.json(int(body["status"]), body)


# ---------------------------------------------------------------------------------------------
# Slack
# ---------------------------------------------------------------------------------------------


class FakeSlack(FakeProvider):
    """``POST /api/chat.postMessage`` and ``/api/chat.update`` (JSON or form, Bearer token)."""

    name = "slack"

    def __init__(self, token: str = "xoxb-fake-bot-token") -> None:
        super().__init__()
        self.token = token
        #: Current state of every posted message, keyed by (channel id, ts).
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self._ts_counter = 99

    def _next_ts(self) -> str:
        self._ts_counter += 1
        return f"1700000000.{self._ts_counter:06d}"

    @staticmethod
    def _channel_id(channel: str) -> str:
        # Posting to a user id opens the app's DM with that user: answer with a D… channel.
        if channel.startswith(("U", "W")):
            return "D0" + channel[1:]
        return channel

    def _is_error_body(self, reply: Reply) -> bool:
        try:
            return json.loads(reply.body or b"{}").get("ok") is False
        except ValueError:
            return False

    @staticmethod
    def _args(req: Recorded) -> dict[str, Any]:
        args = dict(req.json)
        blocks = args.get("blocks")
        if isinstance(blocks, str):  # form-encoded calls send blocks as a JSON string
            with contextlib.suppress(ValueError):
                args["blocks"] = json.loads(blocks)
        return args

    def _answer(self, req: Recorded) -> Reply:
        args = self._args(req)
        token = _bearer(req) or args.get("token")
        if not token:
            return Reply.json(200, {"ok": False, "error": "not_authed"})
        if token != self.token:
            return self._bad_credentials(req)
        method = req.path.removeprefix("/api/")
        channel = str(args.get("channel") or "")
        if method not in {"chat.postMessage", "chat.update"}:
            return Reply.json(404, {"ok": False, "error": "unknown_method"})
        if not channel:
            return Reply.json(200, {"ok": False, "error": "channel_not_found"})
        if not args.get("text") and not args.get("blocks"):
            return Reply.json(200, {"ok": False, "error": "no_text"})
        if method == "chat.postMessage":
            channel_id = self._channel_id(channel)
            ts = self._next_ts()
        else:
            channel_id, ts = channel, str(args.get("ts") or "")
            if (channel_id, ts) not in self.messages:
                return Reply.json(200, {"ok": False, "error": "message_not_found"})
        previous = self.messages.get((channel_id, ts), {})
        if method == "chat.update":
            # Slack: without `blocks`, the old blocks stay only when `text` is not given either.
            text = args.get("text", previous.get("text", ""))
            default_blocks = [] if "text" in args else previous.get("blocks", [])
            blocks = args.get("blocks", default_blocks)
        else:
            text, blocks = args.get("text", ""), args.get("blocks", [])
        message: dict[str, Any] = {
            "type": "message",
            "text": text,
            "blocks": blocks,
            "bot_id": "B0FAKEBOT",
            "user": "U0FAKEBOT",
            "ts": ts,
        }
        if method == "chat.update":
            message["edited"] = {"user": "U0FAKEBOT", "ts": self._next_ts()}
        self.messages[(channel_id, ts)] = message
        payload: dict[str, Any] = {"ok": True, "channel": channel_id, "ts": ts, "message": message}
        if method == "chat.update":
            payload["text"] = message["text"]
        return Reply.json(200, payload)

    def _bad_credentials(self, req: Recorded) -> Reply:
        return Reply.json(200, {"ok": False, "error": "invalid_auth"})

    def _failed(self, req: Recorded, status: int) -> Reply:
        errors = {500: "internal_error", 503: "service_unavailable"}
        return Reply.json(status, {"ok": False, "error": errors.get(status, "fatal_error")})

    def _rate_limited(self, req: Recorded, retry_after: float) -> Reply:
        return Reply.json(429, {"ok": False, "error": "ratelimited"})

    def permanent_next(self, n: int = 1, error: str = "user_not_found") -> None:
        """Answer the next ``n`` calls with HTTP 200 ``{"ok": false, "error": error}``."""
        self._queue(n, _Fault("permanent", options={"error": error}))

    def _permanent(self, req: Recorded, **options: Any) -> Reply:
        return Reply.json(200, {"ok": False, "error": options.get("error", "user_not_found")})
