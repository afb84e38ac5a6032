"""Who may call what: the one declaration of the API's access policy.

Every route of the app is declared here, keyed by ``(method, path template)``: how a caller
authenticates (no token, a signed link or provider signature, or a bearer token), which roles
a token needs, and the row-level rule applied to what it reads or changes. The routers enforce it
(``require_roles``, ``ensure_visible``); ``tests/api/test_role_matrix.py`` walks the app's route
table, fails for a route declared nowhere, and calls every route as anonymous, as each role and
on another person's resource to check the answer matches this table. The README's role table is
generated from it::

    python -m api.policy --markdown
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from enum import StrEnum

from domain.roles import Role
from store.tokens import Scope as Grant


class Access(StrEnum):
    """How a caller proves who it is."""

    #: No credentials: probes and certificate verification.
    PUBLIC = "public"
    #: A signature instead of a token: acknowledgement links, provider webhooks.
    SIGNED = "signed"
    #: ``Authorization: Bearer <token>``; the token's role must be among the declared roles.
    TOKEN = "token"


class Scope(StrEnum):
    """Which rows an admitted role reaches."""

    #: Everything (hr_admin-only or auditor-only routes, the registry of types).
    ALL = "all"
    #: Row-level: a learner their own rows, a manager themself and their reports (transitively);
    #: hr_admin, auditor and integration everyone. An invisible resource is 404.
    ROWS = "rows"
    #: Row-level, and a manager may not act on their own obligation (403).
    NOT_OWN = "not_own"
    #: The person themself (403 for someone else they can see, 404 otherwise); hr_admin anyone.
    SELF = "self"
    #: The caller who started it; hr_admin any.
    STARTER = "starter"


ROLES: tuple[Role, ...] = (
    Role.HR_ADMIN,
    Role.MANAGER,
    Role.LEARNER,
    Role.AUDITOR,
    Role.INTEGRATION,
)


@dataclass(frozen=True)
class Policy:
    """The access rule of one route.

    Attributes:
        access: How the caller authenticates.
        roles: The token roles admitted (403 for the others); empty unless ``access`` is TOKEN.
        scope: The row-level rule for the admitted roles.
        note: Anything the table cannot say (shown in the README).
        grants: The integration-token scopes of which any one admits an integration token
            (required exactly when ``roles`` admits :attr:`Role.INTEGRATION`).
    """

    access: Access
    roles: frozenset[Role] = frozenset()
    scope: Scope = Scope.ALL
    note: str = ""
    grants: frozenset[Grant] = frozenset()

    def __post_init__(self) -> None:
        if (Role.INTEGRATION in self.roles) != bool(self.grants):
            raise ValueError(
                "a policy admitting integration tokens names the scopes that admit them"
                " (grants=...), and only such a policy does"
            )

    def admits(self, role: Role) -> bool:
        """Whether a token of ``role`` passes the role check."""
        return self.access is not Access.TOKEN or role in self.roles

    def cell(self, role: Role) -> str:
        """What ``role`` may do here, in words (a README table cell)."""
        if self.access is Access.PUBLIC:
            return "yes"
        if self.access is Access.SIGNED:
            return "signed"  # a token neither helps nor hurts
        if role not in self.roles:
            return "—"
        if role is Role.INTEGRATION:
            return "scope " + " or ".join(sorted(g.value for g in self.grants))
        if role is Role.HR_ADMIN or self.scope is Scope.ALL:
            return "yes"
        if self.scope is Scope.STARTER:
            return "own jobs"
        if self.scope is Scope.SELF:
            return "own"
        if role is Role.LEARNER:
            return "own"
        if role is Role.MANAGER:
            return "team, not own" if self.scope is Scope.NOT_OWN else "team"
        return "yes"


ALL = frozenset(ROLES)
HR = frozenset({Role.HR_ADMIN})
HR_MANAGER = frozenset({Role.HR_ADMIN, Role.MANAGER})
HR_INTEGRATION = frozenset({Role.HR_ADMIN, Role.INTEGRATION})
HR_MANAGER_INTEGRATION = frozenset({Role.HR_ADMIN, Role.MANAGER, Role.INTEGRATION})
READERS = frozenset({Role.HR_ADMIN, Role.AUDITOR})
MANAGER_READERS = frozenset({Role.HR_ADMIN, Role.MANAGER, Role.AUDITOR})

PUBLIC = Policy(Access.PUBLIC)
SIGNED = Policy(Access.SIGNED)


PEOPLE = frozenset({Role.HR_ADMIN, Role.MANAGER, Role.LEARNER, Role.AUDITOR})
#: Roles a person's own token can have.
PERSONS = frozenset({Role.HR_ADMIN, Role.MANAGER, Role.LEARNER})


def _token(
    roles: frozenset[Role],
    scope: Scope = Scope.ALL,
    note: str = "",
    grants: frozenset[Grant] = frozenset(),
) -> Policy:
    return Policy(Access.TOKEN, roles, scope, note, grants)


def _g(*grants: Grant) -> frozenset[Grant]:
    return frozenset(grants)


#: An identity provider provisioning by SCIM: every ``/scim/v2`` route, and nothing else.
SCIM = _g(Grant.SCIM)

#: The declaration: (method, path template as in /openapi.json) -> policy.
POLICY: dict[tuple[str, str], Policy] = {
    ("GET", "/openapi.json"): Policy(Access.PUBLIC, note="the API description"),
    ("GET", "/docs"): Policy(Access.PUBLIC, note="the API description"),
    ("GET", "/docs/oauth2-redirect"): Policy(Access.PUBLIC, note="the API description"),
    ("GET", "/redoc"): Policy(Access.PUBLIC, note="the API description"),
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): Policy(
        Access.PUBLIC, note="Prometheus: counts and route templates, no ids; keep it internal"
    ),
    ("GET", "/verify/{code}"): Policy(Access.PUBLIC, note="rate-limited per client"),
    ("GET", "/ack/{token}"): Policy(Access.SIGNED, note="the acknowledgement link"),
    ("POST", "/ack/{token}"): Policy(Access.SIGNED, note="the acknowledgement link"),
    ("POST", "/webhooks/sendgrid/events"): Policy(Access.SIGNED, note="provider signature"),
    ("POST", "/webhooks/twilio/status"): Policy(Access.SIGNED, note="provider signature"),
    ("POST", "/webhooks/twilio/sms"): Policy(Access.SIGNED, note="provider signature"),
    ("POST", "/webhooks/slack/interactions"): Policy(Access.SIGNED, note="provider signature"),
    # People
    ("POST", "/people/import"): _token(HR_INTEGRATION, grants=_g(Grant.PEOPLE_IMPORT)),
    ("GET", "/people"): _token(ALL, Scope.ROWS, grants=_g(Grant.PEOPLE_READ)),
    ("GET", "/people/{external_id}"): _token(ALL, Scope.ROWS, grants=_g(Grant.PEOPLE_READ)),
    ("GET", "/people/{external_id}/preferences"): _token(
        frozenset({Role.HR_ADMIN, Role.MANAGER, Role.LEARNER}), Scope.SELF
    ),
    ("PUT", "/people/{external_id}/preferences"): _token(
        frozenset({Role.HR_ADMIN, Role.MANAGER, Role.LEARNER}), Scope.SELF
    ),
    ("GET", "/people/{external_id}/obligations"): _token(PEOPLE, Scope.ROWS),
    # Assignments
    ("GET", "/assignments"): _token(PEOPLE, Scope.ROWS),
    ("POST", "/assignments"): _token(
        HR_MANAGER_INTEGRATION, Scope.NOT_OWN, grants=_g(Grant.ASSIGNMENTS_WRITE)
    ),
    ("POST", "/assignments/bulk"): _token(
        HR_MANAGER, Scope.ROWS, "a manager: own team only, not themself"
    ),
    ("GET", "/assignments/bulk/{bulk_id}"): _token(HR_MANAGER, Scope.STARTER),
    ("GET", "/assignments/{assignment_id}"): _token(
        ALL,
        Scope.ROWS,
        "a machine reads back what it assigned or completed",
        _g(Grant.ASSIGNMENTS_WRITE, Grant.COMPLETIONS_WRITE),
    ),
    ("POST", "/assignments/{assignment_id}/complete"): _token(
        HR_MANAGER_INTEGRATION, Scope.NOT_OWN, grants=_g(Grant.COMPLETIONS_WRITE)
    ),
    ("POST", "/assignments/{assignment_id}/acknowledge"): _token(
        frozenset({Role.HR_ADMIN, Role.MANAGER, Role.LEARNER}), Scope.ROWS
    ),
    ("POST", "/assignments/{assignment_id}/start"): _token(
        frozenset({Role.HR_ADMIN, Role.LEARNER, Role.INTEGRATION}),
        Scope.ROWS,
        grants=_g(Grant.COMPLETIONS_WRITE),
    ),
    ("POST", "/assignments/{assignment_id}/extend"): _token(HR_MANAGER, Scope.NOT_OWN),
    ("POST", "/assignments/{assignment_id}/exempt"): _token(HR),
    ("POST", "/assignments/{assignment_id}/cancel"): _token(HR_MANAGER, Scope.NOT_OWN),
    ("POST", "/assignments/{assignment_id}/restart"): _token(HR),
    ("POST", "/assignments/{assignment_id}/grant-attempts"): _token(HR),
    ("GET", "/obligations"): _token(PEOPLE, Scope.ROWS),
    ("GET", "/notifications"): _token(PEOPLE, Scope.ROWS),
    # Certifications
    ("GET", "/certifications/types"): _token(PEOPLE),
    ("GET", "/certifications/expiring"): _token(
        frozenset({Role.HR_ADMIN, Role.MANAGER, Role.AUDITOR}), Scope.ROWS
    ),
    ("GET", "/certifications"): _token(PEOPLE, Scope.ROWS),
    ("POST", "/certifications"): _token(HR_MANAGER, Scope.ROWS),
    ("GET", "/certifications/{certification_id}"): _token(PEOPLE, Scope.ROWS),
    ("POST", "/certifications/{certification_id}/renew"): _token(HR_MANAGER, Scope.NOT_OWN),
    ("POST", "/certifications/{certification_id}/ce-credits"): _token(
        frozenset({Role.HR_ADMIN, Role.MANAGER, Role.LEARNER}), Scope.ROWS
    ),
    ("POST", "/certifications/{certification_id}/suspend"): _token(HR),
    ("POST", "/certifications/{certification_id}/reinstate"): _token(HR),
    ("POST", "/certifications/{certification_id}/revoke"): _token(HR),
    ("POST", "/certifications/{certification_id}/restart"): _token(HR),
    # Apprenticeships: apprentices their own, supervisors their apprentices, managers their
    # reports, HR all, the auditor reads (row-level in services.apprenticeships)
    ("GET", "/apprenticeship/programs"): _token(PEOPLE),
    ("GET", "/apprenticeship/programs/{program_id}"): _token(PEOPLE),
    ("POST", "/apprenticeship/enroll"): _token(HR),
    ("GET", "/apprenticeship"): _token(
        PEOPLE, Scope.ROWS, "also the apprentices a person supervises"
    ),
    ("GET", "/me/apprenticeship"): _token(PERSONS, Scope.ALL, "the caller's own"),
    ("GET", "/me/apprenticeship/progress"): _token(PERSONS, Scope.ALL, "the caller's own"),
    ("POST", "/me/apprenticeship/log-hours"): _token(PERSONS, Scope.ALL, "the caller's own"),
    ("POST", "/apprenticeship/{apprenticeship_id}/hours/{entry_id}/approve"): _token(
        PERSONS, Scope.ROWS, "the apprentice's supervisor, or HR"
    ),
    ("POST", "/apprenticeship/{apprenticeship_id}/hours/{entry_id}/reject"): _token(
        PERSONS, Scope.ROWS, "the apprentice's supervisor, or HR"
    ),
    ("POST", "/apprenticeship/{apprenticeship_id}/evaluate"): _token(
        PERSONS, Scope.ROWS, "the apprentice's supervisor, or HR"
    ),
    ("POST", "/apprenticeship/{apprenticeship_id}/suspend"): _token(HR),
    ("POST", "/apprenticeship/{apprenticeship_id}/reinstate"): _token(HR),
    ("POST", "/apprenticeship/{apprenticeship_id}/withdraw"): _token(HR),
    ("POST", "/apprenticeship/{apprenticeship_id}/transfer-supervisor"): _token(HR),
    # SCIM provisioning (integration tokens need scope scim)
    ("POST", "/scim/v2/Users"): _token(HR_INTEGRATION, grants=SCIM),
    ("GET", "/scim/v2/Users"): _token(HR_INTEGRATION, grants=SCIM),
    ("GET", "/scim/v2/Users/{user_id}"): _token(HR_INTEGRATION, grants=SCIM),
    ("PUT", "/scim/v2/Users/{user_id}"): _token(HR_INTEGRATION, grants=SCIM),
    ("PATCH", "/scim/v2/Users/{user_id}"): _token(HR_INTEGRATION, grants=SCIM),
    ("DELETE", "/scim/v2/Users/{user_id}"): _token(HR_INTEGRATION, grants=SCIM),
    ("POST", "/scim/v2/Groups"): _token(HR_INTEGRATION, grants=SCIM),
    ("GET", "/scim/v2/Groups"): _token(HR_INTEGRATION, grants=SCIM),
    ("GET", "/scim/v2/Groups/{group_id}"): _token(HR_INTEGRATION, grants=SCIM),
    ("PUT", "/scim/v2/Groups/{group_id}"): _token(HR_INTEGRATION, grants=SCIM),
    ("PATCH", "/scim/v2/Groups/{group_id}"): _token(HR_INTEGRATION, grants=SCIM),
    ("DELETE", "/scim/v2/Groups/{group_id}"): _token(HR_INTEGRATION, grants=SCIM),
    ("GET", "/scim/v2/ServiceProviderConfig"): _token(HR_INTEGRATION, grants=SCIM),
    ("GET", "/scim/v2/ResourceTypes"): _token(HR_INTEGRATION, grants=SCIM),
    ("GET", "/scim/v2/ResourceTypes/{name}"): _token(HR_INTEGRATION, grants=SCIM),
    ("GET", "/scim/v2/Schemas"): _token(HR_INTEGRATION, grants=SCIM),
    ("GET", "/scim/v2/Schemas/{urn}"): _token(HR_INTEGRATION, grants=SCIM),
    # Completions from an LMS
    ("POST", "/xapi/statements"): _token(HR_INTEGRATION, grants=_g(Grant.XAPI_WRITE)),
    ("POST", "/completions"): _token(HR_INTEGRATION, grants=_g(Grant.COMPLETIONS_WRITE)),
    ("GET", "/xapi/dead-letters"): _token(HR),
    # Learning-system integrations (connectors)
    ("GET", "/integrations"): _token(HR),
    ("POST", "/integrations"): _token(HR),
    ("GET", "/integrations/{integration_id}"): _token(HR),
    ("PATCH", "/integrations/{integration_id}"): _token(HR),
    ("DELETE", "/integrations/{integration_id}"): _token(HR),
    ("POST", "/integrations/{integration_id}/test"): _token(HR),
    ("POST", "/integrations/{integration_id}/sync"): _token(HR),
    ("POST", "/xapi/dead-letters/{dead_letter_id}/resolve"): _token(HR),
    # Rules
    ("POST", "/rules/validate"): _token(HR),
    ("POST", "/rules/preview"): _token(HR),
    ("POST", "/rules/deploy"): _token(HR),
    ("GET", "/rules/versions"): _token(HR),
    ("GET", "/rules/active"): _token(HR),
    ("GET", "/rules/versions/{content_hash}"): _token(HR),
    # Tokens
    ("GET", "/tokens"): _token(HR),
    ("DELETE", "/tokens/{token_id}"): _token(HR),
    # Mentorship
    ("GET", "/mentorship/profile/mentor"): _token(PERSONS, Scope.ROWS, "?person= (default: own)"),
    ("PUT", "/mentorship/profile/mentor"): _token(PERSONS, Scope.SELF, "HR: any person"),
    ("GET", "/mentorship/profile/mentee"): _token(PERSONS, Scope.ROWS, "?person= (default: own)"),
    ("PUT", "/mentorship/profile/mentee"): _token(PERSONS, Scope.SELF, "HR: any person"),
    ("POST", "/mentorship/profiles/import/mentor"): _token(HR, note="CSV"),
    ("POST", "/mentorship/profiles/import/mentee"): _token(HR, note="CSV"),
    ("GET", "/mentorship/find-mentor"): _token(
        PERSONS, Scope.ROWS, "?person= (default: own), a mentee"
    ),
    ("GET", "/mentorship/find-mentee"): _token(
        PERSONS, Scope.ROWS, "?person= (default: own), a mentor"
    ),
    ("POST", "/mentorship/request"): _token(PERSONS, Scope.SELF, "the mentee asks"),
    ("PUT", "/mentorship/request/{mentee}/{mentor}/{n}/accept"): _token(
        PERSONS, Scope.ROWS, "the mentor (or HR)"
    ),
    ("PUT", "/mentorship/request/{mentee}/{mentor}/{n}/decline"): _token(
        PERSONS, Scope.ROWS, "the mentor (or HR)"
    ),
    ("POST", "/mentorship/{mentee}/{mentor}/{n}/log-session"): _token(
        PERSONS, Scope.ROWS, "either side (or HR)"
    ),
    ("POST", "/mentorship/{mentee}/{mentor}/{n}/feedback"): _token(
        PERSONS, Scope.ROWS, "either side"
    ),
    ("POST", "/mentorship/{mentee}/{mentor}/{n}/complete"): _token(
        PERSONS, Scope.ROWS, "either side (or HR)"
    ),
    ("POST", "/mentorship/{mentee}/{mentor}/{n}/cancel"): _token(
        PERSONS, Scope.ROWS, "either side (or HR)"
    ),
    ("GET", "/mentorship/{mentee}/{mentor}/{n}"): _token(
        PEOPLE, Scope.ROWS, "session notes: author and HR only"
    ),
    ("GET", "/mentorship"): _token(PEOPLE, Scope.ROWS),
    ("GET", "/me/mentorship"): _token(PEOPLE, Scope.ROWS, "as mentee or mentor"),
    # Tracks, learning paths and projects (issue 17)
    ("GET", "/tracks"): _token(PEOPLE),
    ("GET", "/tracks/{track_id}"): _token(PEOPLE),
    ("POST", "/tracks/{track_id}/enroll"): _token(
        HR_MANAGER, Scope.NOT_OWN, "a manager: their reports"
    ),
    ("POST", "/tracks/{track_id}/withdraw"): _token(
        HR_MANAGER, Scope.NOT_OWN, "a manager: their reports"
    ),
    ("POST", "/tracks/{track_id}/reorder"): _token(HR),
    ("POST", "/tracks/{track_id}/deactivate"): _token(HR),
    ("POST", "/tracks/{track_id}/activate"): _token(HR),
    ("GET", "/tracks/{track_id}/progress"): _token(MANAGER_READERS, Scope.ROWS),
    ("GET", "/tracks/{track_id}/summary"): _token(MANAGER_READERS, Scope.ROWS),
    ("GET", "/people/{external_id}/tracks"): _token(PEOPLE, Scope.ROWS),
    ("GET", "/me/tracks"): _token(
        frozenset({Role.HR_ADMIN, Role.MANAGER, Role.LEARNER}), Scope.ROWS
    ),
    ("POST", "/projects"): _token(HR),
    ("GET", "/projects"): _token(MANAGER_READERS, Scope.ROWS, "a manager: projects they manage"),
    ("POST", "/projects/{project_id}/tracks"): _token(
        HR_MANAGER, Scope.ROWS, "a manager: projects they manage"
    ),
    ("GET", "/projects/{project_id}/readiness"): _token(
        MANAGER_READERS, Scope.ROWS, "a manager: projects they manage"
    ),
    ("POST", "/projects/{project_id}/go-live"): _token(
        HR_MANAGER, Scope.ROWS, "a manager: projects they manage"
    ),
    # A new project manager, after the last one left (the directory flags it) or any time.
    ("POST", "/projects/{project_id}/manager"): _token(
        HR, note="a new project manager (after one left, or any time)"
    ),
    # Compliance dashboards (issue 18): numbers within the caller's rows
    ("GET", "/compliance/summary"): _token(PEOPLE, Scope.ROWS, "?scope=team|department|org"),
    ("GET", "/compliance/breakdown"): _token(PEOPLE, Scope.ROWS, "?by=…"),
    ("GET", "/compliance/at-risk"): _token(PEOPLE, Scope.ROWS),
    ("GET", "/compliance/trend"): _token(PEOPLE, Scope.ROWS, "from recorded decisions"),
    ("GET", "/compliance/as-of"): _token(PEOPLE, Scope.ROWS, "from recorded decisions"),
    ("GET", "/compliance/report.pdf"): _token(MANAGER_READERS, Scope.ROWS, "?day= (as of)"),
    # Audit
    ("GET", "/audit"): _token(READERS),
    ("GET", "/audit/verify"): _token(READERS),
    ("GET", "/audit/evidence"): _token(READERS, note="ZIP; ?person= or ?team= or ?requirement="),
    ("GET", "/audit/workflows/{workflow_id}/history"): _token(READERS),
    ("GET", "/audit/workflows/{workflow_id}/timeline"): _token(READERS),
    # Pages (/ui): a session cookie holds the caller's token (or send it as a bearer token);
    # the same roles and row-level scope as the API. See api/web.py.
    ("GET", "/ui/sign-in"): Policy(Access.PUBLIC, note="page"),
    ("POST", "/ui/sign-in/link"): Policy(
        Access.PUBLIC, note="page: emails a one-time link; the same answer for any address"
    ),
    ("GET", "/ui/sign-in/link/{token}"): Policy(Access.SIGNED, note="the one-time sign-in link"),
    ("POST", "/ui/sign-in/link/{token}"): Policy(Access.SIGNED, note="the one-time sign-in link"),
    ("POST", "/ui/sign-in/token"): Policy(Access.PUBLIC, note="page: the pasted token decides"),
    ("POST", "/ui/sign-out"): _token(PEOPLE, note="page"),
    ("GET", "/ui"): _token(PEOPLE, note="page: to the caller's own page"),
    ("GET", "/ui/me"): _token(PERSONS, Scope.ALL, "page: the caller's own"),
    ("POST", "/ui/me/preferences"): _token(PERSONS, Scope.ALL, "page: the caller's own"),
    ("POST", "/ui/obligations/{workflow_id}/acknowledge"): _token(PERSONS, Scope.ROWS, "page"),
    ("POST", "/ui/obligations/{workflow_id}/ce-credits"): _token(PERSONS, Scope.ROWS, "page"),
    ("GET", "/ui/people/{external_id}"): _token(PEOPLE, Scope.ROWS, "page"),
    ("POST", "/ui/obligations/{workflow_id}/extend"): _token(HR_MANAGER, Scope.NOT_OWN, "page"),
    ("POST", "/ui/obligations/{workflow_id}/request-exemption"): _token(
        HR_MANAGER, Scope.NOT_OWN, "page: recorded for HR"
    ),
    ("POST", "/ui/obligations/{workflow_id}/remind"): _token(
        HR_MANAGER, Scope.NOT_OWN, "page: once per obligation per day"
    ),
    ("GET", "/ui/team"): _token(HR_MANAGER, Scope.ROWS, "page: ?manager= (HR: anyone's team)"),
    ("GET", "/ui/org"): _token(READERS, note="page"),
    ("GET", "/ui/export/{table}"): _token(
        MANAGER_READERS, Scope.ROWS, "page: a dashboard table as CSV (managers: their team)"
    ),
    ("GET", "/ui/evidence.zip"): _token(READERS, note="page: the evidence pack"),
    ("GET", "/ui/report.pdf"): _token(
        MANAGER_READERS, Scope.ROWS, "page: the PDF report (managers: their team)"
    ),
    ("GET", "/ui/tracks"): _token(
        MANAGER_READERS, Scope.ROWS, "page: each track's summary (managers: their team)"
    ),
    ("GET", "/ui/tracks.csv"): _token(MANAGER_READERS, Scope.ROWS, "page: the summary as CSV"),
    ("GET", "/ui/tracks/{track_id}"): _token(
        MANAGER_READERS, Scope.ROWS, "page: a track's people (managers: their team)"
    ),
    ("GET", "/ui/tracks/{track_id}/people.csv"): _token(
        MANAGER_READERS, Scope.ROWS, "page: a track's people as CSV"
    ),
    ("GET", "/ui/projects"): _token(
        MANAGER_READERS, Scope.ROWS, "page: a manager: the projects they manage"
    ),
    ("GET", "/ui/projects/{project_id}"): _token(
        MANAGER_READERS, Scope.ROWS, "page: go-live readiness (managers: their projects)"
    ),
    ("GET", "/ui/projects/{project_id}/readiness.csv"): _token(
        MANAGER_READERS, Scope.ROWS, "page: readiness per track as CSV"
    ),
    ("GET", "/ui/apprenticeships"): _token(
        PEOPLE, Scope.ROWS, "page: also the apprentices a person supervises"
    ),
    ("GET", "/ui/apprenticeships.csv"): _token(
        PEOPLE, Scope.ROWS, "page: the list as CSV, the same rows"
    ),
    ("GET", "/ui/apprenticeships/{apprenticeship_id}"): _token(
        PEOPLE, Scope.ROWS, "page: also the apprentices a person supervises"
    ),
    ("POST", "/ui/apprenticeships/enroll"): _token(HR, note="page: enrol an apprentice"),
    ("POST", "/ui/apprenticeships/{apprenticeship_id}/suspend"): _token(HR, note="page"),
    ("POST", "/ui/apprenticeships/{apprenticeship_id}/reinstate"): _token(HR, note="page"),
    ("POST", "/ui/apprenticeships/{apprenticeship_id}/withdraw"): _token(HR, note="page"),
    ("POST", "/ui/apprenticeships/{apprenticeship_id}/transfer-supervisor"): _token(
        HR, note="page"
    ),
    ("POST", "/ui/apprenticeships/{apprenticeship_id}/log-hours"): _token(
        PERSONS, Scope.ROWS, "page: the apprentice's own"
    ),
    ("POST", "/ui/apprenticeships/{apprenticeship_id}/hours/{entry_id}/approve"): _token(
        PERSONS, Scope.ROWS, "page: the apprentice's supervisor, or HR"
    ),
    ("POST", "/ui/apprenticeships/{apprenticeship_id}/hours/{entry_id}/reject"): _token(
        PERSONS, Scope.ROWS, "page: the apprentice's supervisor, or HR"
    ),
    ("POST", "/ui/apprenticeships/{apprenticeship_id}/evaluate"): _token(
        PERSONS, Scope.ROWS, "page: the apprentice's supervisor, or HR"
    ),
    ("GET", "/ui/mentorship"): _token(
        PEOPLE, Scope.ROWS, "page: own mentorships and matches; managers, HR, auditor: all seen"
    ),
    ("GET", "/ui/mentorship/{table}.csv"): _token(
        PEOPLE, Scope.ROWS, "page: a table of the page as CSV, the same rows"
    ),
    ("GET", "/ui/mentorship/profiles"): _token(
        HR, note="page: ?person=&side= a mentor or mentee profile to edit"
    ),
    ("POST", "/ui/mentorship/profiles/{side}"): _token(
        HR, note="page: PUT /mentorship/profile/{side}'s service"
    ),
    ("POST", "/ui/mentorship/request"): _token(PERSONS, Scope.ALL, "page: the caller asks"),
    ("POST", "/ui/mentorship/{mentee}/{mentor}/{n}/accept"): _token(
        PERSONS, Scope.ROWS, "page: the mentor (or HR)"
    ),
    ("POST", "/ui/mentorship/{mentee}/{mentor}/{n}/decline"): _token(
        PERSONS, Scope.ROWS, "page: the mentor (or HR)"
    ),
    ("POST", "/ui/mentorship/{mentee}/{mentor}/{n}/log-session"): _token(
        PERSONS, Scope.ROWS, "page: either side (or HR)"
    ),
    ("POST", "/ui/mentorship/{mentee}/{mentor}/{n}/feedback"): _token(
        PERSONS, Scope.ROWS, "page: either side"
    ),
    ("GET", "/ui/audit"): _token(READERS, note="page"),
    ("GET", "/ui/audit/obligations/{workflow_id}"): _token(READERS, note="page"),
    ("GET", "/ui/audit/obligations/{workflow_id}/history.json"): _token(READERS, note="page"),
}


def markdown() -> str:
    """The README's role table: one row per route, one column per caller."""
    header = ["endpoint", "no token", *(role.value for role in ROLES), "notes"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for (method, path), policy in POLICY.items():
        anonymous = {
            Access.PUBLIC: "yes",
            Access.SIGNED: "signed",
            Access.TOKEN: "—",
        }[policy.access]
        cells = [f"`{method} {path}`", anonymous, *(policy.cell(role) for role in ROLES)]
        lines.append("| " + " | ".join([*cells, policy.note]).rstrip() + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m api.policy --markdown``: print the README's role table."""
    parser = argparse.ArgumentParser(prog="python -m api.policy", description=__doc__)
    parser.add_argument("--markdown", action="store_true", help="print the README role table")
    args = parser.parse_args(argv)
    if not args.markdown:
        parser.print_help()
        return 2
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def integration_grants(method: str, path: str) -> frozenset[Grant]:
    """The scopes of which any one admits an integration token to ``method path`` (empty: none).

    ``path`` is the route's template as declared (``/assignments/{assignment_id}``).
    """
    policy = POLICY.get((method, path))
    return policy.grants if policy is not None else frozenset()
