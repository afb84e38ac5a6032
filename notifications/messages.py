"""Render reminder messages per kind, stage and channel, with a pack's template overrides.

Templates live in ``notifications/templates`` (built-in) and in a pack's ``templates/`` directory
(:attr:`rules.model.Pack.templates`, the *overrides*). For one message part the first template
found on this chain is used, an override winning over a built-in at every step::

    {kind}/{stage}.{channel}.{part}.j2      e.g. certification/-14d.email.html.j2
    {kind}/{event}.{channel}.{part}.j2      e.g. mentorship/race-lost.email.txt.j2
    {kind}/reminder.{channel}.{part}.j2     e.g. certification/reminder.sms.txt.j2
    default/reminder.{channel}.{part}.j2

The ``{event}`` step is tried for a notice that names its event (``context["event"]``): a
certification's ``revoked``, or one of a mentorship's per-stage messages
(:data:`domain.contracts.mentorship.MESSAGE_EVENTS`: ``request``, ``request-reminder``,
``accepted``, ``declined``, ``expired``, ``race-lost``, ``nudge-mentee``, ``nudge-mentor``,
``nudge-coordinator``, ``feedback-midpoint``, ``feedback-end``, ``action-item``, ``completed``,
``cancelled``), whose ledger stages carry a period or an index (``s2:mentor``, ``action-3``).

A stage labelled with spaces (``final warning``) may also be written as a slug
(``final-warning``). A digest (``digest_items`` set) uses ``digest`` instead of the stage and of
``reminder``. ``assignment`` is accepted as an alias of the ``training`` kind (the legacy
``assignment/reminder.*.j2`` templates of :mod:`notifications.render` are left as they are).

Parts per channel (:data:`CHANNEL_PARTS`): email ``subject``, ``txt``, ``html``; sms ``txt``
(passed through :func:`notifications.sms.fit_sms`, one segment); in_app ``subject``, ``txt``;
slack ``txt`` (notification/fallback text, also used as the subject) and ``json`` (a JSON array
of Block Kit blocks; for a learner with an acknowledgement token it holds an ``actions`` block with
a ``button`` whose ``action_id`` is ``acknowledge`` and whose ``value`` is the token).

Escaping: ``.html`` and ``.json`` templates are autoescaped; in ``.json`` templates every value
must go through ``tojson`` (JSON string escaping), and text that Slack shows as mrkdwn through
``mrkdwn`` first (``&``, ``<``, ``>`` escaped). Text, subject and SMS parts are not escaped.
Templates run in a Jinja2 sandbox with ``StrictUndefined``: a missing variable is an error. The
sandbox also bounds the work of one message (:mod:`notifications.sandbox`): values, loops, calls
and output; a template over a bound fails validation, and at send time fails without retrying.

Wording per kind: the built-in channel templates lay out sentences that the kind's wording file
``{kind}/_wording.j2`` (falling back, macro by macro, to ``default/_wording.j2``) writes. Its
macros ``subject``, ``lead``, ``action``, ``reason`` and ``sms`` (and ``digest_subject``,
``digest_lead``, ``digest_action``, ``digest_sms`` for digests) are rendered as plain text and
handed to the templates as ``wording.subject``, ``wording.lead``, ... A pack may override a
wording file to change the words on every channel at once.

Context variables (``context`` of :func:`render_message`):

* ``first_name`` (str): The recipient's first name (the manager's, for a manager). Optional
  (``None``: "Hello,") for ``hr``, ``employer_contact`` and ``slack_channel``.
* ``title`` (str): The requirement's title.
* ``kind`` (str): ``training``, ``certification``, ``apprenticeship`` or ``mentorship``
  (default: the ``kind`` argument).
* ``due_date`` (str): The due (or, for certifications, expiry) date, ISO ``YYYY-MM-DD``.
* ``days_before_due`` (int): Days until that date: > 0 before, 0 on the day, < 0 overdue.
* ``days_left_phrase`` (str): e.g. "3 days left" (default: derived from ``days_before_due``).
* ``late_notice`` (bool): The first reminder of an obligation assigned late (default False).
* ``stage`` (str): The stage name, e.g. ``-30d``, ``0d``, ``+7d`` or a label (default: the
  ``stage`` argument).
* ``workflow_id`` (str): The obligation's workflow id (a reference, no personal data).
* ``recipient_role`` (str): ``learner`` (default), ``manager``, ``managers_manager``, ``hr``,
  ``employer_contact`` or ``slack_channel``. Learners are addressed in the second person; anyone
  else is told about the learner ("Ada Lovelace's training ... is overdue").
* ``learner_name`` (str): The learner's full name; required for every role but ``learner``.
  Names may appear in message bodies, never in URLs.
* ``ack_url`` (str | None): The absolute http(s) acknowledgement URL, holding only an opaque
  token (default None). Shown to learners only.
* ``ack_token`` (str | None): The acknowledgement token, the Slack button's value (default: the
  last path segment of ``ack_url``, as :func:`notifications.ack.ack_url` builds it).
* ``ce_credits_short`` (int): Continuing-education credits still missing (certifications;
  default 0).
* ``event`` (str | None): A notice that is not a reminder: ``lapsed`` (grace ended),
  ``suspended``, ``reinstated`` or ``revoked`` (certifications), or a mentorship's message
  (see above; default None).
* ``detail`` (str | None): One plain sentence the notice adds, such as why a mentorship
  request lost the mentor's last slot (default None).
* ``digest_items`` (list[dict] | None): For a digest, the items, each with ``title``,
  ``due_date``, ``days_before_due`` and ``stage`` (default None: a single reminder).

Derived (set by :func:`render_message`, usable by templates): ``learner_view`` (bool, the
recipient is the learner) and ``wording`` (dict of the wording macros' results).

Filters: ``days`` (``-3`` → "3 days", ``1`` → "1 day"), ``possessive`` ("Ada Lovelace" →
"Ada Lovelace's"), ``due_phrase`` (``3`` → "due in 3 days", ``0`` → "due today", ``-2`` →
"2 days overdue") and ``mrkdwn`` (Slack escaping).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    DictLoader,
    Environment,
    PackageLoader,
    StrictUndefined,
    TemplateNotFound,
)
from markupsafe import Markup

from domain.contracts.mentorship import MESSAGE_EVENTS
from notifications.sandbox import BoundedSandbox, render_bounded, render_budget
from notifications.sms import fit_sms
from rules.lint import Finding, Level

if TYPE_CHECKING:
    from rules.model import Pack

#: The template parts each channel needs.
CHANNEL_PARTS: dict[str, tuple[str, ...]] = {
    "email": ("subject", "txt", "html"),
    "sms": ("txt",),
    "in_app": ("subject", "txt"),
    "slack": ("txt", "json"),
}

#: Who a message may be for (the values of :class:`rules.model.Recipient`).
RECIPIENT_ROLES: frozenset[str] = frozenset(
    {"learner", "manager", "managers_manager", "hr", "employer_contact", "slack_channel"}
)

#: Kinds with built-in wording (any other kind uses ``default/``).
KINDS: tuple[str, ...] = ("training", "certification", "apprenticeship", "mentorship")

#: Other names accepted for a kind.
KIND_ALIASES: dict[str, str] = {"assignment": "training"}

#: The stage name digest templates use.
DIGEST = "digest"

_WORDING = "_wording.j2"
_REMINDER_MACROS = {
    "subject": "subject",
    "lead": "lead",
    "action": "action",
    "reason": "reason",
    "sms": "sms",
}
_DIGEST_MACROS = {
    "subject": "digest_subject",
    "lead": "digest_lead",
    "action": "digest_action",
    "reason": "reason",
    "sms": "digest_sms",
}
_TEMPLATE_NAME = re.compile(
    r"(?P<kind>[^/]+)/(?P<stage>[^/]+)\.(?P<channel>email|sms|in_app|slack)"
    r"\.(?P<part>subject|txt|html|json)\.j2"
)
_NO_PERSONAL_ROLES = frozenset({"hr", "employer_contact", "slack_channel"})


class MessageTemplateError(ValueError):
    """A template rendered, but its output is unusable (e.g. Slack blocks that are not JSON)."""


@dataclass(frozen=True)
class RenderedMessage:
    """One message rendered for one channel.

    Attributes:
        subject: Email / in-app subject; for Slack the notification (fallback) text; empty for
            SMS.
        text: Plain text body (email text part, SMS body, in-app body, Slack fallback text).
        html: Email HTML part (None for other channels).
        blocks: Slack Block Kit blocks (None for other channels).
        templates: Which template rendered each part: part → template name.
    """

    subject: str
    text: str
    html: str | None = None
    blocks: list[dict[str, Any]] | None = None
    templates: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Environment


def _days(value: int) -> str:
    count = abs(int(value))
    return f"{count} day" if count == 1 else f"{count} days"


def _possessive(name: str) -> str:
    return f"{str(name).strip()}'s"


def _due_phrase(days: int) -> str:
    if days > 0:
        return f"due in {_days(days)}"
    return "due today" if days == 0 else f"{_days(days)} overdue"


def _mrkdwn(value: Any) -> Markup:
    text = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return Markup(text)


def _autoescape(name: str | None) -> bool:
    return name is not None and name.endswith((".html.j2", ".json.j2", ".html"))


_BUILTIN = PackageLoader("notifications", "templates")


@lru_cache(maxsize=64)
def _environment(overrides: tuple[tuple[str, str], ...]) -> Environment:
    loaders: list[BaseLoader] = [DictLoader(dict(overrides))] if overrides else []
    environment = BoundedSandbox(
        loader=ChoiceLoader([*loaders, _BUILTIN]),
        autoescape=_autoescape,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    environment.filters.update(
        days=_days, possessive=_possessive, due_phrase=_due_phrase, mrkdwn=_mrkdwn
    )
    return environment


def environment(overrides: Mapping[str, str] | None = None) -> Environment:
    """The sandboxed template environment: ``overrides`` (path → source) first, then built-ins."""
    return _environment(tuple(sorted((overrides or {}).items())))


@lru_cache(maxsize=1)
def builtin_templates() -> frozenset[str]:
    """The names of every built-in template."""
    return frozenset(_BUILTIN.list_templates())


# --------------------------------------------------------------------------------------------
# Lookup


def normalize_kind(kind: str) -> str:
    """The template directory of ``kind`` (``assignment`` → ``training``)."""
    value = str(kind).strip().lower()
    return KIND_ALIASES.get(value, value)


def _stage_names(stage: str) -> list[str]:
    names = [stage]
    slug = re.sub(r"[^\w+-]+", "-", stage.strip().lower()).strip("_")
    if slug != stage:
        names.append(slug)
    return [n for n in names if n and "/" not in n and "\\" not in n and not n.startswith(".")]


def lookup_chain(
    kind: str, stage: str, channel: str, part: str, event: str | None = None
) -> list[str]:
    """The template names tried, in order, for one part of a message.

    Args:
        kind: The requirement kind (``training``, ``certification``, ...).
        stage: The stage name (``-30d``, ``0d``, ``+7d``, a label) or ``digest``.
        channel: ``email``, ``sms``, ``in_app`` or ``slack``.
        part: ``subject``, ``txt``, ``html`` or ``json``.
        event: The notice's event (``race-lost``...), tried after the stage.

    Returns:
        Template names, most specific first.
    """
    kind = normalize_kind(kind)
    base = DIGEST if stage == DIGEST else "reminder"
    names = [f"{kind}/{name}.{channel}.{part}.j2" for name in _stage_names(str(stage))]
    if event and stage != DIGEST:
        names += [f"{kind}/{name}.{channel}.{part}.j2" for name in _stage_names(str(event))]
    names += [f"{kind}/{base}.{channel}.{part}.j2", f"default/{base}.{channel}.{part}.j2"]
    return list(dict.fromkeys(names))


def find_template(
    kind: str,
    stage: str,
    channel: str,
    part: str,
    overrides: Mapping[str, str] | None = None,
    *,
    builtins: bool = True,
    event: str | None = None,
) -> str | None:
    """The template that would render one part (None: nothing on the chain exists).

    Args:
        kind: The requirement kind.
        stage: The stage name or ``digest``.
        channel: The channel.
        part: The part.
        overrides: A pack's templates (path under ``templates/`` → source).
        builtins: Whether the built-in templates count.
        event: The notice's event, if any.
    """
    available = set(overrides or {})
    if builtins:
        available |= builtin_templates()
    chain = lookup_chain(kind, stage, channel, part, event)
    return next((n for n in chain if n in available), None)


# --------------------------------------------------------------------------------------------
# Rendering


def _token_from(url: str | None) -> str | None:
    if not url:
        return None
    segment = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    return unquote(segment) or None


def _prepare(kind: str, stage: str, context: Mapping[str, Any]) -> dict[str, Any]:
    values = dict(context)
    values.setdefault("kind", normalize_kind(kind))
    values.setdefault("stage", str(stage))
    role = values.setdefault("recipient_role", "learner")
    if role not in RECIPIENT_ROLES:
        raise ValueError(f"unknown recipient_role {role!r}; use one of {sorted(RECIPIENT_ROLES)}")
    values["learner_view"] = role == "learner"
    values.setdefault("late_notice", False)
    values.setdefault("ack_url", None)
    values.setdefault("ce_credits_short", 0)
    values.setdefault("event", None)
    values.setdefault("detail", None)
    values.setdefault("digest_items", None)
    if role == "learner" or values["digest_items"] is not None:
        values.setdefault("learner_name", None)
    if role in _NO_PERSONAL_ROLES:
        values.setdefault("first_name", None)
    if isinstance(values.get("due_date"), date):
        values["due_date"] = values["due_date"].isoformat()
    url = values["ack_url"]
    if url is not None:
        parts = urlsplit(str(url))
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ValueError("ack_url must be an absolute http(s) URL")
    values.setdefault("ack_token", _token_from(url))
    days = values.get("days_before_due")
    if isinstance(days, int) and "days_left_phrase" not in values:
        values["days_left_phrase"] = (
            f"{_days(days)} left" if days > 0 else _due_phrase(days).removeprefix("due ")
        )
    return values


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def _wording(env: Environment, kind: str, values: dict[str, Any]) -> dict[str, str]:
    """Call the wording macros (kind file first, then the default file, macro by macro)."""
    modules = []
    for name in (f"{normalize_kind(kind)}/{_WORDING}", f"default/{_WORDING}"):
        try:
            modules.append(env.get_template(name).make_module(values))
        except TemplateNotFound:
            continue
    macros = _DIGEST_MACROS if values["digest_items"] is not None else _REMINDER_MACROS
    wording: dict[str, str] = {}
    for key, macro in macros.items():
        function = next((getattr(m, macro) for m in modules if hasattr(m, macro)), None)
        wording[key] = _one_line(str(function())) if callable(function) else ""
    return wording


def _blocks(text: str) -> list[dict[str, Any]]:
    try:
        blocks = json.loads(text)
    except json.JSONDecodeError as error:
        raise MessageTemplateError(f"Slack blocks are not valid JSON: {error}") from None
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise MessageTemplateError("Slack blocks must be a JSON array of objects")
    return blocks


def render_message(
    kind: str,
    stage: str,
    channel: str,
    context: Mapping[str, Any],
    *,
    overrides: Mapping[str, str] | None = None,
) -> RenderedMessage:
    """Render one message for one recipient on one channel.

    Args:
        kind: The requirement kind (``training``, ``certification``, ``apprenticeship``,
            ``mentorship``; another kind uses the ``default`` templates).
        stage: The stage name (``-30d``, ``0d``, ``+7d`` or a label). Ignored for the template
            lookup when ``context["digest_items"]`` is set (the ``digest`` templates are used).
        channel: ``email``, ``sms``, ``in_app`` or ``slack``.
        context: The template variables (see the module docstring).
        overrides: A pack's templates (:attr:`rules.model.Pack.templates`).

    Returns:
        The rendered subject, text, HTML (email) and blocks (Slack).

    Raises:
        ValueError: Unknown channel or recipient role, or an ``ack_url`` that is not absolute.
        jinja2.TemplateNotFound: No template on the lookup chain of a part.
        jinja2.TemplateError: A template failed (e.g. an undefined variable).
        MessageTemplateError: The Slack template did not render a JSON array of objects.
    """
    channel = str(channel)
    if channel not in CHANNEL_PARTS:
        raise ValueError(f"unknown channel {channel!r}; use one of {sorted(CHANNEL_PARTS)}")
    env = environment(overrides)
    values = _prepare(kind, stage, context)
    output: dict[str, str] = {}
    names: dict[str, str] = {}
    # One work budget for the whole message: wording and every part (notifications.sandbox).
    with render_budget():
        values["wording"] = _wording(env, kind, values)
        lookup_stage = DIGEST if values["digest_items"] is not None else str(stage)
        for part in CHANNEL_PARTS[channel]:
            chain = lookup_chain(kind, lookup_stage, channel, part, values["event"])
            template = env.select_template(chain)
            names[part] = template.name or ""
            output[part] = render_bounded(template, values)
    return _assemble(channel, output, names)


def _assemble(channel: str, output: dict[str, str], names: dict[str, str]) -> RenderedMessage:
    if channel == "sms":
        return RenderedMessage("", fit_sms(_tidy(output["txt"])), templates=names)
    if channel == "slack":
        text = _one_line(output["txt"])
        return RenderedMessage(text, text, blocks=_blocks(output["json"]), templates=names)
    subject = _one_line(output["subject"])
    html = output["html"].strip() if "html" in output else None
    return RenderedMessage(subject, _tidy(output["txt"]), html, templates=names)


# --------------------------------------------------------------------------------------------
# Checks for rules lint


def _used(pack: Pack) -> Iterable[tuple[str, str, str]]:
    """Every (kind, stage name, channel) the pack's requirements and policies use, once."""
    seen: set[tuple[str, str, str]] = set()
    for requirement in pack.requirements:
        policy = pack.policy_for(requirement)
        for stage in policy.stages if policy else []:
            for channel in stage.channels:
                key = (str(requirement.kind), stage.name, str(channel))
                if key not in seen:
                    seen.add(key)
                    yield key


def missing_templates(pack: Pack, *, builtins: bool = True) -> list[str]:
    """Every message part the pack would send but no template renders.

    Args:
        pack: A loaded pack.
        builtins: Whether the built-in templates count (False: the pack's own only).

    Returns:
        Human-readable problems, e.g. ``certification stage -14d channel sms: no txt template
        (looked for certification/-14d.sms.txt.j2, ...)``.
    """
    problems: list[str] = []
    for kind, stage, channel in _used(pack):
        where = f"{kind} stage {stage} channel {channel}"
        if channel not in CHANNEL_PARTS:
            problems.append(f"{where}: Duly has no templates for this channel")
            continue
        for part in CHANNEL_PARTS[channel]:
            if find_template(kind, stage, channel, part, pack.templates, builtins=builtins):
                continue
            chain = ", ".join(lookup_chain(kind, stage, channel, part))
            problems.append(f"{where}: no {part} template (looked for {chain})")
    return problems


_SAMPLE_TITLE = 'Fire Safety "Level 2" \\ <Basics> & More'


def _samples(kind: str, stage: str, digest: bool) -> list[dict[str, Any]]:
    """Sample contexts covering both voices and before/on/after the date."""
    if digest:
        items = [
            {"title": _SAMPLE_TITLE, "due_date": "2026-11-24", "days_before_due": -2},
            {"title": "Hand Hygiene", "due_date": "2026-12-06", "days_before_due": 10},
        ]
        items = [{**item, "stage": f"{item['days_before_due']:+d}d"} for item in items]
        manager = {"recipient_role": "manager", "learner_name": "Ada Lovelace"}
        return [
            {"first_name": "Ada", "digest_items": items},
            {"first_name": "Grace", **manager, "digest_items": items},
        ]
    common: dict[str, Any] = {
        "title": _SAMPLE_TITLE,
        "kind": kind,
        "stage": stage,
        "due_date": "2026-11-26",
        "workflow_id": "assignment/p-0000/sample/1",
        "ack_url": "https://duly.example.com/ack/sample-token",
        "ce_credits_short": 2 if kind == "certification" else 0,
    }
    manager = {"recipient_role": "manager", "learner_name": "Ada Lovelace"}
    return [
        {**common, "first_name": "Ada", "days_before_due": 14},
        {**common, "first_name": "Ada", "days_before_due": 5, "late_notice": True},
        {**common, "first_name": "Grace", **manager, "days_before_due": -3},
        {**common, "recipient_role": "hr", "learner_name": "Ada Lovelace", "days_before_due": 0},
    ]


def _events(kind: str, stage: str, wording: bool) -> list[str | None]:
    """The notice events an override is rendered for (a mentorship's per-stage messages)."""
    if kind != "mentorship":
        return [None]
    events = sorted(set(MESSAGE_EVENTS.values()))
    if wording:
        return [None, *events]  # one wording file speaks for every stage
    return [stage] if stage in events else [None]


def _check(path: str, overrides: Mapping[str, str]) -> None:
    """Render one override with every sample context; raise what the first failure raised."""
    env = environment(overrides)
    match = _TEMPLATE_NAME.fullmatch(path)
    directory = path.split("/", 1)[0] if "/" in path else "default"
    kind = normalize_kind(directory) if normalize_kind(directory) in KINDS else "training"
    stage = match.group("stage") if match else "-14d"
    is_wording = path.rsplit("/", 1)[-1] == _WORDING
    samples = [
        {**sample, "event": event, "detail": "the mentor has no free slot (1 of 1 taken)"}
        if event
        else sample
        for event in _events(kind, stage, is_wording)
        for sample in _samples(kind, stage, digest=stage == DIGEST)
    ]
    for sample in samples:
        values = _prepare(kind, stage, sample)
        with render_budget():
            if is_wording:
                _wording(env, directory, values)
                continue
            # Channel templates get the built-in wording: a broken wording file is its own
            # finding.
            values["wording"] = _wording(environment(), kind, values)
            text = render_bounded(env.get_template(path), values)
        if match and match.group("part") == "json":
            _blocks(text)


def template_errors(pack: Pack) -> list[str]:
    """Render every template override of ``pack`` with sample contexts; report the failures.

    Each override is rendered for a learner and a manager (and HR), before, on and after the
    date (digest templates with a sample digest). An undefined variable, a template error, a
    sandbox violation or Slack blocks that are not a JSON array of objects is reported.

    Args:
        pack: A loaded pack.

    Returns:
        One line per failing template: ``"<path>: <error>"``.
    """
    errors: list[str] = []
    for path in sorted(pack.templates):
        try:
            _check(path, pack.templates)
        except Exception as error:  # noqa: BLE001 - a template can raise anything; report it
            errors.append(f"{path}: {type(error).__name__}: {error}")
    return errors


def unused_templates(pack: Pack) -> list[str]:
    """Overrides whose name no lookup uses (a typo such as ``-14d.emial.html.j2``).

    Wording files (``_wording.j2``) and other files starting with ``_`` (includes, macros) are
    considered used.

    Args:
        pack: A loaded pack.

    Returns:
        One line per unused template.
    """
    unused: list[str] = []
    for path in sorted(pack.templates):
        if path.rsplit("/", 1)[-1].startswith("_"):
            continue
        match = _TEMPLATE_NAME.fullmatch(path)
        if match is None or match.group("part") not in CHANNEL_PARTS[match.group("channel")]:
            unused.append(
                f"{path}: never used; name templates {{kind}}/{{stage}}.{{channel}}.{{part}}.j2"
                " with part subject, txt, html (email), json (slack)"
            )
    return unused


def lint_templates(pack: Pack) -> list[Finding]:
    """The lint findings of ``pack``'s templates (pass to :func:`rules.lint.lint`).

    Missing templates and templates that fail to render are errors; overrides no lookup uses
    are warnings.
    """
    findings = [Finding(Level.ERROR, "missing-template", p) for p in missing_templates(pack)]
    for problem in template_errors(pack):
        # Over the sandbox's bounds (notifications.sandbox): its own code, so it is not taken
        # for a typo; at send time it would fail without retrying.
        code = "template-too-expensive" if "TemplateLimitError" in problem else "template-error"
        findings.append(Finding(Level.ERROR, code, problem, problem.split(":", 1)[0]))
    findings += [Finding(Level.WARNING, "unused-template", p) for p in unused_templates(pack)]
    return findings
