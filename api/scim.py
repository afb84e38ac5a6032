"""SCIM 2.0 (RFC 7643 schemas, RFC 7644 protocol) for the directory: mapping, filters, PATCH.

Pure protocol code: it turns SCIM resources into directory fields and back, parses the filter
subset Duly answers, and applies PATCH operations to a resource. The router
(:mod:`api.routers.scim`) calls it and :mod:`services.directory`.

Duly keys people by one id (the HRIS ``external_id``): SCIM ``id``, ``externalId`` and the
enterprise ``employeeNumber`` are that id, and it cannot change once a person exists. SCIM
``userName`` (often the sign-in email) is stored apart in ``people.user_name``, unique ignoring
case, and may change; a person created by the HR import, who has none, shows their external id.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from services.directory import AllOf, AnyOf, Attribute, Compare, Condition, Operator
from store.models import Person

SCIM_MEDIA_TYPE = "application/scim+json"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
DULY = "urn:duly:params:scim:schemas:extension:duly:2.0:User"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SPC = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
RESOURCE_TYPE = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"

#: The most resources one list response holds (``count`` above it is lowered to it).
MAX_COUNT = 200
#: The longest filter accepted, in characters.
MAX_FILTER = 1000
#: ``people.user_name`` is 200 characters.
MAX_USER_NAME = 200


class ScimError(Exception):
    """An error answered in SCIM's error schema (RFC 7644 §3.12)."""

    def __init__(self, status: int, detail: str, scim_type: str | None = None) -> None:
        """``status`` is the HTTP status; ``scim_type`` e.g. ``invalidFilter``."""
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scim_type = scim_type

    def body(self) -> dict[str, Any]:
        """The error resource (``status`` is a string, as the RFC says)."""
        out: dict[str, Any] = {"schemas": [ERROR], "status": str(self.status)}
        if self.scim_type:
            out["scimType"] = self.scim_type
        out["detail"] = self.detail
        return out


def invalid_value(detail: str) -> ScimError:
    """A 400 ``invalidValue``."""
    return ScimError(400, detail, "invalidValue")


# ---------------------------------------------------------------------------------------------
# Person -> SCIM User
# ---------------------------------------------------------------------------------------------


def _split_name(name: str) -> tuple[str, str | None]:
    given, _, family = name.strip().partition(" ")
    return given, family.strip() or None


def user_resource(person: Person, base: str) -> dict[str, Any]:
    """The person as a SCIM User (core, enterprise and Duly extension attributes)."""
    given, family = _split_name(person.name)
    resource: dict[str, Any] = {
        "schemas": [USER, ENTERPRISE, DULY],
        "id": person.external_id,
        "externalId": person.external_id,
        "userName": person.user_name or person.external_id,
        "name": {"formatted": person.name, "givenName": given},
        "displayName": person.name,
        "active": person.employment_status != "terminated",
        "timezone": person.time_zone,
    }
    if family:
        resource["name"]["familyName"] = family
    if person.email:
        resource["emails"] = [{"value": person.email, "type": "work", "primary": True}]
    if person.phone:
        resource["phoneNumbers"] = [{"value": person.phone, "type": "work", "primary": True}]
    roles = list(person.roles or [])
    if roles:
        resource["title"] = roles[0]
        resource["roles"] = [
            {"value": role, "primary": index == 0} for index, role in enumerate(roles)
        ]
    if person.location:
        resource["addresses"] = [{"type": "work", "locality": person.location, "primary": True}]
    enterprise: dict[str, Any] = {"employeeNumber": person.external_id}
    if person.department:
        enterprise["department"] = person.department
    if person.employer:
        enterprise["organization"] = person.employer
    if person.manager is not None:
        enterprise["manager"] = {
            "value": person.manager.external_id,
            "$ref": f"{base}/Users/{person.manager.external_id}",
            "displayName": person.manager.name,
        }
    resource[ENTERPRISE] = enterprise
    # The location is shown once, as the work address's locality (a PATCH of either works).
    duly: dict[str, Any] = {"employmentStatus": person.employment_status}
    if person.slack_user_id:
        duly["slackUserId"] = person.slack_user_id
    resource[DULY] = duly
    version = etag(resource)
    resource["meta"] = {
        "resourceType": "User",
        "created": person.created_at.isoformat(),
        "lastModified": person.updated_at.isoformat(),
        "location": f"{base}/Users/{person.external_id}",
        "version": version,
    }
    return resource


def etag(resource: Mapping[str, Any]) -> str:
    """A weak entity tag over the resource's attributes (``meta`` excluded)."""
    content = {k: v for k, v in resource.items() if k != "meta"}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode())
    return f'W/"{digest.hexdigest()[:32]}"'


# ---------------------------------------------------------------------------------------------
# SCIM User -> directory fields
# ---------------------------------------------------------------------------------------------


def _lower_keys(value: Any) -> Any:
    """Attribute names are case-insensitive (RFC 7643 §2.1): normalise mapping keys."""
    if isinstance(value, dict):
        return {
            (k if k.startswith("urn:") else k.lower()): _lower_keys(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    return value


def _extension(resource: Mapping[str, Any], urn: str) -> dict[str, Any] | None:
    for key, value in resource.items():
        if key.lower() == urn.lower():
            if value is None:
                return {}
            if not isinstance(value, dict):
                raise invalid_value(f"{urn} must be an object")
            return value
    return None


def _pick(items: Any, attribute: str, sub: str = "value") -> Any:
    """The primary (else work, else first) element's sub-attribute of a multi-valued attribute."""
    if items is None:
        return None
    if not isinstance(items, list):
        raise invalid_value(f"{attribute} must be a list of objects")
    elements = [e for e in items if isinstance(e, dict)]
    if len(elements) != len(items):
        raise invalid_value(f"{attribute} must be a list of objects")
    if not elements:
        return None
    chosen = next(
        (e for e in elements if e.get("primary") is True),
        next((e for e in elements if str(e.get("type", "")).lower() == "work"), elements[0]),
    )
    return chosen.get(sub)


def _string(value: Any, attribute: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise invalid_value(f"{attribute} must be a string")


def _name(resource: Mapping[str, Any]) -> str | None:
    name = resource.get("name")
    if name is not None and not isinstance(name, dict):
        raise invalid_value("name must be an object (formatted, givenName, familyName)")
    if name:
        parts = [
            _string(name.get("givenname"), "name.givenName"),
            _string(name.get("familyname"), "name.familyName"),
        ]
        joined = " ".join(p.strip() for p in parts if p and p.strip())
        if joined:
            return joined
        formatted = _string(name.get("formatted"), "name.formatted")
        if formatted and formatted.strip():
            return formatted
    return _string(resource.get("displayname"), "displayName")


def _role_key(role: str) -> str:
    return re.sub(r"\s+", "_", role.strip().lower())


def _manager(value: Any) -> Any:
    if isinstance(value, dict):
        lowered = {k.lower(): v for k, v in value.items()}
        return lowered.get("value")
    return value


def user_fields(raw: Mapping[str, Any], *, current: Person | None = None) -> dict[str, Any]:
    """Directory fields (:class:`store.people.PersonRow` keys) from a SCIM User.

    Attributes the User omits map to None (cleared), except the Duly extension's, which are
    only present when the extension is. ``current`` (on replace) keeps a person on leave on
    leave when ``active`` stays true.

    Raises:
        ScimError: 400 when an attribute has the wrong shape, ``userName`` is missing, or
            ``externalId`` and ``employeeNumber`` disagree.
    """
    resource = _lower_keys(dict(raw))
    user_name = resource.get("username")
    if not isinstance(user_name, str) or not user_name.strip():
        raise ScimError(400, "userName is required", "invalidValue")
    user_name = user_name.strip()
    if len(user_name) > MAX_USER_NAME:
        raise invalid_value(f"userName is longer than {MAX_USER_NAME} characters")
    enterprise = _extension(resource, ENTERPRISE) or {}
    enterprise = _lower_keys(enterprise)
    given = {
        attribute: value
        for attribute, value in (
            ("externalId", resource.get("externalid")),
            (f"{ENTERPRISE}:employeeNumber", enterprise.get("employeenumber")),
        )
        if value is not None
    }
    if current is not None and any(str(v) != current.external_id for v in given.values()):
        raise ScimError(
            400,
            "externalId/employeeNumber cannot change (it is Duly's key for this person, "
            f"{current.external_id!r}); create a new user instead",
            "mutability",
        )
    if len(set(map(str, given.values()))) > 1:
        raise invalid_value(
            "externalId and employeeNumber differ: Duly keys people by one id (the HRIS "
            "employee id); map both to it, or leave one unmapped"
        )
    if given:
        external_id: Any = next(iter(given.values()))
    elif current is not None:
        external_id = current.external_id  # an identity provider that never sends it
    elif "@" in user_name:
        raise invalid_value(
            "userName looks like an email address and neither externalId nor employeeNumber "
            "is given: Duly keys people by their HRIS employee id; map externalId (or the "
            "enterprise employeeNumber) to it in your identity provider"
        )
    else:
        external_id = user_name  # userName is the employee id
    fields: dict[str, Any] = {
        "external_id": external_id,
        "user_name": user_name,
        "name": _name(resource),
    }
    fields["email"] = _pick(resource.get("emails"), "emails")
    fields["phone"] = _pick(resource.get("phonenumbers"), "phoneNumbers")
    roles = resource.get("roles")
    listed: list[Any] = []
    if roles is not None:
        if not isinstance(roles, list):
            raise invalid_value("roles must be a list of objects with a value")
        listed = [
            _string(r.get("value"), "roles.value") if isinstance(r, dict) else r for r in roles
        ]
    title = _string(resource.get("title"), "title")
    if title and _role_key(title) not in {_role_key(r) for r in listed if isinstance(r, str)}:
        # The title is the primary role: a new title replaces the first one.
        listed = [title, *listed[1:]]
    fields["roles"] = listed
    fields["time_zone"] = _string(resource.get("timezone"), "timezone")
    fields["department"] = _string(enterprise.get("department"), f"{ENTERPRISE}:department")
    fields["employer"] = _string(enterprise.get("organization"), f"{ENTERPRISE}:organization")
    fields["manager"] = _manager(enterprise.get("manager"))
    fields["location"] = _pick(resource.get("addresses"), "addresses", "locality")
    duly = _extension(resource, DULY)
    duly = _lower_keys(duly) if duly is not None else None
    if duly is not None:
        if "location" in duly:
            fields["location"] = _string(duly.get("location"), f"{DULY}:location")
        if "slackuserid" in duly:
            fields["slack_user_id"] = _string(duly.get("slackuserid"), f"{DULY}:slackUserId")
    active = resource.get("active", True)
    if not isinstance(active, bool):
        if isinstance(active, str) and active.lower() in {"true", "false"}:
            active = active.lower() == "true"  # Entra ID sends "False" as a string in PATCH
        else:
            raise invalid_value("active must be true or false")
    # ``active`` decides whether the person works here; the Duly extension only tells leave
    # from active (a rendered resource carries both, so a PATCH of either one is honoured).
    extended = duly.get("employmentstatus") if duly else None
    if not active:
        status: Any = "terminated"
    elif extended is not None and extended != "terminated":
        status = extended
    elif current is not None and current.employment_status == "leave" and extended is None:
        status = "leave"
    else:
        status = "active"
    fields["employment_status"] = status
    return fields


# ---------------------------------------------------------------------------------------------
# Filters (RFC 7644 §3.4.2.2), the subset Duly answers
# ---------------------------------------------------------------------------------------------

_TOKEN = re.compile(r'\s*(?:(?P<lp>\()|(?P<rp>\))|(?P<str>"(?:[^"\\]|\\.)*")|(?P<word>[^\s()"]+))')
_USER_FILTER_ATTRIBUTES: dict[str, Attribute] = {
    "username": "user_name",
    "externalid": "external_id",
    "id": "external_id",
    "displayname": "name",
    "name.formatted": "name",
    "emails": "email",
    "emails.value": "email",
    "title": "role",
    "roles": "role",
    "roles.value": "role",
    "active": "active",
    "addresses.locality": "location",
    f"{ENTERPRISE}:department".lower(): "department",
    f"{ENTERPRISE}:employeenumber".lower(): "external_id",
    f"{ENTERPRISE}:organization".lower(): "employer",
    f"{DULY}:location".lower(): "location",
}
_OPERATORS: frozenset[str] = frozenset({"eq", "co", "sw"})
_ALL_OPERATORS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "pr"})


def _invalid_filter(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidFilter")


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise _invalid_filter(f"cannot read the filter at character {position + 1}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _FilterParser:
    def __init__(self, text: str, attributes: Mapping[str, Attribute]) -> None:
        self.tokens = _tokens(text)
        self.position = 0
        self.attributes = attributes

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise _invalid_filter("the filter ends too early")
        self.position += 1
        return token

    def parse(self) -> Condition:
        condition = self.disjunction()
        if self.peek() is not None:
            raise _invalid_filter(f"unexpected {self.peek()[1]!r} in the filter")  # type: ignore[index]
        return condition

    def disjunction(self) -> Condition:
        parts = [self.conjunction()]
        while (token := self.peek()) is not None and token[1].lower() == "or":
            self.take()
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))

    def conjunction(self) -> Condition:
        parts = [self.term()]
        while (token := self.peek()) is not None and token[1].lower() == "and":
            self.take()
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def term(self) -> Condition:
        kind, text = self.take()
        if kind == "lp":
            inner = self.disjunction()
            if self.take()[0] != "rp":
                raise _invalid_filter("a '(' in the filter is not closed")
            return inner
        if kind != "word" or text.lower() in {"and", "or", "not"}:
            raise _invalid_filter(
                f"unexpected {text!r}: Duly answers attribute comparisons joined by and/or"
            )
        attribute = self.attributes.get(text.lower())
        if attribute is None:
            known = ", ".join(sorted({k for k in self.attributes if not k.startswith("urn:")}))
            raise _invalid_filter(f"cannot filter on {text[:100]!r}; filterable: {known}")
        op_kind, op = self.take()
        op = op.lower()
        if op_kind != "word" or op not in _ALL_OPERATORS:
            raise _invalid_filter(f"{op[:20]!r} is not a SCIM comparison operator")
        if op not in _OPERATORS:
            raise _invalid_filter(f"operator {op!r} is not supported; use eq, co or sw")
        value_kind, raw = self.take()
        value: str | bool
        if value_kind == "str":
            value = json.loads(raw)
        elif raw.lower() in {"true", "false"}:
            value = raw.lower() == "true"
        else:
            raise _invalid_filter(f"compare with a quoted string or true/false, not {raw[:40]!r}")
        if attribute == "active" and (not isinstance(value, bool) or op != "eq"):
            raise _invalid_filter("active can only be compared with eq true or eq false")
        if attribute != "active" and not isinstance(value, str):
            raise _invalid_filter(f"{text} is compared with a quoted string")
        operator: Operator = "eq" if op == "eq" else "co" if op == "co" else "sw"
        return Compare(attribute, operator, value)


def parse_user_filter(text: str) -> Condition:
    """A SCIM filter on Users as a directory condition.

    Supported: ``eq``, ``co`` and ``sw`` on userName, externalId, id, displayName, emails,
    title/roles, active (eq only), addresses.locality and the enterprise department,
    employeeNumber and organization, joined by ``and``/``or`` with parentheses.

    Raises:
        ScimError: 400 ``invalidFilter`` naming what is not supported.
    """
    if len(text) > MAX_FILTER:
        raise _invalid_filter(f"the filter is longer than {MAX_FILTER} characters")
    return _FilterParser(text, _USER_FILTER_ATTRIBUTES).parse()


# ---------------------------------------------------------------------------------------------
# PATCH (RFC 7644 §3.5.2) applied to a resource
# ---------------------------------------------------------------------------------------------

_PATH = re.compile(
    r"^(?P<urn>urn:[^\[\]]+:)?(?P<attr>[A-Za-z$][\w$-]*)"
    r"(?:\[(?P<filter>[^\]]+)\])?(?:\.(?P<sub>[A-Za-z$][\w$-]*))?$"
)
_VALUE_FILTER = re.compile(
    r'^\s*(?P<attr>[A-Za-z][\w]*)\s+eq\s+(?P<value>"(?:[^"\\]|\\.)*")\s*$', re.I
)
_URNS = (ENTERPRISE, DULY)


def _invalid_path(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidPath")


def _find_key(container: dict[str, Any], name: str) -> str:
    for key in container:
        if key.lower() == name.lower():
            return key
    return name


def _container(resource: dict[str, Any], urn: str | None) -> dict[str, Any]:
    if urn is None:
        return resource
    key = _find_key(resource, urn)
    value = resource.get(key)
    if not isinstance(value, dict):
        value = {}
        resource[key] = value
    return value


def _split_path(path: str) -> tuple[str | None, str, str | None, str | None]:
    """(extension urn, attribute, value filter, sub-attribute) of a PATCH path."""
    urn: str | None = None
    rest = path.strip()
    for candidate in _URNS:
        if rest.lower().startswith(candidate.lower() + ":"):
            urn, rest = candidate, rest[len(candidate) + 1 :]
            break
        if rest.lower() == candidate.lower():
            return candidate, "", None, None
    if rest.lower().startswith(USER.lower() + ":"):
        rest = rest[len(USER) + 1 :]
    match = _PATH.match(rest)
    if match is None or match.group("urn"):
        raise _invalid_path(f"cannot read the PATCH path {path[:200]!r}")
    return urn, match.group("attr"), match.group("filter"), match.group("sub")


def _set(container: dict[str, Any], attribute: str, value: Any, *, add: bool) -> None:
    key = _find_key(container, attribute)
    if add and isinstance(container.get(key), list) and isinstance(value, list):
        container[key] = [*container[key], *value]
    elif add and isinstance(container.get(key), dict) and isinstance(value, dict):
        container[key] = {**container[key], **value}
    else:
        container[key] = value


def _matches(element: Any, attribute: str, expected: str) -> bool:
    if not isinstance(element, dict):
        return False
    actual = element.get(_find_key(element, attribute))
    return isinstance(actual, str) and actual.lower() == expected.lower()


def _apply(resource: dict[str, Any], op: str, path: str | None, value: Any) -> None:
    if path is None or not path.strip():
        if op == "remove":
            raise ScimError(400, "remove needs a path", "noTarget")
        if not isinstance(value, dict):
            raise invalid_value("an add or replace without a path needs an object value")
        for name, item in value.items():
            # Entra ID sends {"name.givenName": "Ann"}; extensions arrive as whole objects.
            if any(name.lower() == urn.lower() for urn in _URNS) and isinstance(item, dict):
                for sub, sub_value in item.items():
                    _apply(resource, op, f"{name}:{sub}", sub_value)
            else:
                _apply(resource, op, name, item)
        return
    urn, attribute, value_filter, sub = _split_path(path)
    if urn is not None and not attribute:
        if op == "remove":
            resource.pop(_find_key(resource, urn), None)
            return
        if not isinstance(value, dict):
            raise invalid_value(f"{urn} takes an object")
        for name, item in value.items():
            _apply(resource, op, f"{urn}:{name}", item)
        return
    container = _container(resource, urn)
    key = _find_key(container, attribute)
    if attribute.lower() == "name" and sub is None and isinstance(value, dict) and op != "remove":
        container[key] = {**(container.get(key) or {}), **value} if op == "add" else value
        return
    if value_filter is not None:
        found = _VALUE_FILTER.match(value_filter)
        if found is None:
            raise _invalid_path(
                f"value filter {value_filter[:100]!r} is not supported: use "
                '[type eq "work"] style filters'
            )
        filter_attribute, expected = found.group("attr"), json.loads(found.group("value"))
        items = container.get(key)
        items = list(items) if isinstance(items, list) else []
        targets = [e for e in items if _matches(e, filter_attribute, expected)]
        if op == "remove":
            if sub is None:
                items = [e for e in items if e not in targets]
            else:
                for element in targets:
                    element.pop(_find_key(element, sub), None)
            container[key] = items
            return
        if not targets:
            element = {filter_attribute: expected}
            items.append(element)
            targets = [element]
        for element in targets:
            if sub is None:
                if not isinstance(value, dict):
                    raise invalid_value(f"{path} takes an object")
                element.update(value)
            else:
                element[_find_key(element, sub)] = value
        container[key] = items
        return
    if sub is not None:
        parent = container.get(key)
        if not isinstance(parent, dict):
            if isinstance(parent, list):
                raise _invalid_path(
                    f"{path}: {attribute} has several values; select one with a filter such as "
                    f'{attribute}[type eq "work"].{sub}'
                )
            parent = {}
        sub_key = _find_key(parent, sub)
        if op == "remove":
            parent.pop(sub_key, None)
        else:
            parent[sub_key] = value
        if attribute.lower() == "name":
            # Duly keeps one name: a changed part replaces the formatted form and vice versa.
            drop = {"formatted"} if sub.lower() != "formatted" else {"givenname", "familyname"}
            parent = {k: v for k, v in parent.items() if k.lower() not in drop}
        container[key] = parent
        return
    if op == "remove" and isinstance(value, list) and isinstance(container.get(key), list):
        # Entra ID removes group members as {"path": "members", "value": [{"value": id}]}.
        gone = {str(v.get("value")) for v in value if isinstance(v, dict)}
        container[key] = [
            e for e in container[key] if not (isinstance(e, dict) and str(e.get("value")) in gone)
        ]
        return
    if op == "remove" and attribute.lower() != "title":
        container.pop(key, None)
        return
    if attribute.lower() == "title" and urn is None:
        # Duly's roles carry the title as their first (primary) role.
        roles_key = _find_key(resource, "roles")
        roles = [r for r in resource.get(roles_key) or [] if isinstance(r, dict)]
        rest = roles[1:] if roles else []
        if op == "remove":
            resource[roles_key] = rest
            container.pop(key, None)
            return
        resource[roles_key] = [{"value": value, "primary": True}, *rest]
    if attribute.lower() == "displayname" and urn is None:
        # Duly keeps one name: a new display name is the person's name.
        resource[_find_key(resource, "name")] = {"formatted": value}
    _set(container, attribute, value, add=op == "add")


def apply_patch(resource: Mapping[str, Any], body: Any) -> dict[str, Any]:
    """The resource after a PatchOp's operations (each add, replace or remove, in order).

    Raises:
        ScimError: 400 ``invalidSyntax``, ``invalidPath``, ``noTarget`` or ``invalidValue``.
    """
    if not isinstance(body, dict):
        raise ScimError(400, "the body must be a PatchOp object", "invalidSyntax")
    schemas = body.get("schemas")
    if not isinstance(schemas, list) or PATCH_OP not in schemas:
        raise ScimError(400, f"a PATCH body lists the schema {PATCH_OP}", "invalidSyntax")
    operations = body.get("Operations", body.get("operations"))
    if not isinstance(operations, list) or not operations:
        raise ScimError(400, "Operations must be a non-empty list", "invalidSyntax")
    result = copy.deepcopy(dict(resource))
    result.pop("meta", None)
    for operation in operations:
        if not isinstance(operation, dict):
            raise ScimError(400, "each operation is an object with op", "invalidSyntax")
        op = str(operation.get("op", "")).lower()
        if op not in {"add", "replace", "remove"}:
            raise ScimError(
                400,
                f"op {str(operation.get('op'))[:20]!r} is not add, replace or remove",
                "invalidSyntax",
            )
        path = operation.get("path")
        if path is not None and not isinstance(path, str):
            raise _invalid_path("path must be a string")
        if op != "remove" and "value" not in operation:
            raise ScimError(400, f"{op} needs a value", "invalidSyntax")
        _apply(result, op, path, operation.get("value"))
    return result


# ---------------------------------------------------------------------------------------------
# Groups: departments
# ---------------------------------------------------------------------------------------------


def group_id(department: str) -> str:
    """A department's group id: its name, base64url-encoded (names may hold '/' or spaces)."""
    return base64.urlsafe_b64encode(department.encode()).decode().rstrip("=")


def department_of(group: str) -> str:
    """The department a group id names.

    Raises:
        ScimError: 404 when the id is not one Duly issued.
    """
    try:
        name = base64.urlsafe_b64decode(group + "=" * (-len(group) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ScimError(404, f"no group {group[:64]!r}") from None
    if not name or group_id(name) != group:
        raise ScimError(404, f"no group {group[:64]!r}")
    return name


def group_resource(department: str, members: list[Person], base: str) -> dict[str, Any]:
    """A department as a SCIM Group."""
    resource: dict[str, Any] = {
        "schemas": [GROUP],
        "id": group_id(department),
        "displayName": department,
        "members": [
            {
                "value": person.external_id,
                "$ref": f"{base}/Users/{person.external_id}",
                "display": person.name,
                "type": "User",
            }
            for person in members
        ],
    }
    resource["meta"] = {
        "resourceType": "Group",
        "location": f"{base}/Groups/{resource['id']}",
        "version": etag(resource),
    }
    return resource


def group_fields(raw: Mapping[str, Any]) -> tuple[str, list[str]]:
    """(department name, member user ids) of a SCIM Group.

    Raises:
        ScimError: 400 when ``displayName`` is missing or members are not ``{"value": id}``.
    """
    resource = _lower_keys(dict(raw))
    name = resource.get("displayname")
    if not isinstance(name, str) or not name.strip():
        raise invalid_value("displayName is required: the department's name")
    members = resource.get("members") or []
    if not isinstance(members, list) or not all(
        isinstance(m, dict) and isinstance(m.get("value"), str) for m in members
    ):
        raise invalid_value('members must be a list of {"value": userName}')
    return name.strip(), [m["value"] for m in members]


_GROUP_FILTER_ATTRIBUTES: dict[str, Attribute] = {"displayname": "department"}


def parse_group_filter(text: str) -> Condition:
    """A filter on Groups: ``eq``/``co``/``sw`` on ``displayName``, with and/or.

    Raises:
        ScimError: 400 ``invalidFilter``.
    """
    if len(text) > MAX_FILTER:
        raise _invalid_filter(f"the filter is longer than {MAX_FILTER} characters")
    return _FilterParser(text, _GROUP_FILTER_ATTRIBUTES).parse()


def holds(condition: Condition, value: str) -> bool:
    """Whether a department name satisfies a group filter (case-insensitive)."""
    if isinstance(condition, AllOf):
        return all(holds(part, value) for part in condition.parts)
    if isinstance(condition, AnyOf):
        return any(holds(part, value) for part in condition.parts)
    expected, actual = str(condition.value).lower(), value.lower()
    if condition.op == "eq":
        return actual == expected
    if condition.op == "sw":
        return actual.startswith(expected)
    return expected in actual


def paging(start_index: int | None, count: int | None) -> tuple[int, int]:
    """(0-based offset, limit) from SCIM's 1-based ``startIndex`` and ``count``.

    A ``startIndex`` below 1 is read as 1 and a negative ``count`` as 0 (RFC 7644 §3.4.2.4);
    ``count`` is bounded by :data:`MAX_COUNT`.
    """
    start = max(1, start_index or 1)
    limit = MAX_COUNT if count is None else min(max(0, count), MAX_COUNT)
    return start - 1, limit


def list_response(resources: list[dict[str, Any]], total: int, start: int) -> dict[str, Any]:
    """A ListResponse message."""
    return {
        "schemas": [LIST],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }


# ---------------------------------------------------------------------------------------------
# Discovery (RFC 7644 §4, RFC 7643 §5-7)
# ---------------------------------------------------------------------------------------------


def service_provider_config(base: str) -> dict[str, Any]:
    """What Duly's SCIM server supports."""
    return {
        "schemas": [SPC],
        "documentationUri": "https://github.com/duly/duly#provisioning-with-scim",
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": MAX_COUNT},
        "changePassword": {"supported": False},
        "sort": {"supported": False},
        "etag": {"supported": True},
        "authenticationSchemes": [
            {
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "A Duly token: `duly tokens create --role integration --scope scim`",
                "primary": True,
            }
        ],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": f"{base}/ServiceProviderConfig",
        },
    }


def resource_types(base: str) -> list[dict[str, Any]]:
    """The resource types Duly serves."""
    return [
        {
            "schemas": [RESOURCE_TYPE],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "description": "A person in the Duly directory",
            "schema": USER,
            "schemaExtensions": [
                {"schema": ENTERPRISE, "required": False},
                {"schema": DULY, "required": False},
            ],
            "meta": {"resourceType": "ResourceType", "location": f"{base}/ResourceTypes/User"},
        },
        {
            "schemas": [RESOURCE_TYPE],
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "description": "A department: the people whose department it is",
            "schema": GROUP,
            "meta": {"resourceType": "ResourceType", "location": f"{base}/ResourceTypes/Group"},
        },
    ]


def _attribute(
    name: str,
    kind: str = "string",
    *,
    multi: bool = False,
    required: bool = False,
    mutability: str = "readWrite",
    uniqueness: str = "none",
    sub: list[dict[str, Any]] | None = None,
    description: str = "",
) -> dict[str, Any]:
    attribute: dict[str, Any] = {
        "name": name,
        "type": kind,
        "multiValued": multi,
        "description": description or name,
        "required": required,
        "caseExact": False,
        "mutability": mutability,
        "returned": "default",
        "uniqueness": uniqueness,
    }
    if sub is not None:
        attribute["subAttributes"] = sub
    if kind == "reference":
        attribute["referenceTypes"] = ["User"]
    return attribute


def _multi(name: str, value: str = "value", description: str = "") -> dict[str, Any]:
    return _attribute(
        name,
        "complex",
        multi=True,
        description=description,
        sub=[
            _attribute(value),
            _attribute("type"),
            _attribute("primary", "boolean"),
        ],
    )


def schemas(base: str) -> list[dict[str, Any]]:
    """The User schema (the attributes Duly keeps) and the two extensions."""
    user = [
        _attribute(
            "userName",
            required=True,
            uniqueness="server",
            description=(
                "The sign-in name (often an email address); unique ignoring case; may change. "
                "The HRIS employee id is externalId/employeeNumber (the SCIM id)"
            ),
        ),
        _attribute(
            "name",
            "complex",
            sub=[_attribute("formatted"), _attribute("givenName"), _attribute("familyName")],
            description="Kept as one name",
        ),
        _attribute("displayName", description="The person's name"),
        _attribute("title", description="The primary role"),
        _attribute("timezone", description="IANA time zone, e.g. Europe/London"),
        _attribute("active", "boolean", description="false: the person has left"),
        _multi("emails", description="The work address is used"),
        _multi("phoneNumbers", description="E.164; the work number is used"),
        _multi("roles", description="Duly roles, e.g. nurse (packs' applies_to)"),
        _attribute(
            "addresses",
            "complex",
            multi=True,
            sub=[_attribute("locality"), _attribute("type"), _attribute("primary", "boolean")],
            description="The work address's locality is the person's location",
        ),
    ]
    enterprise = [
        _attribute(
            "employeeNumber",
            mutability="immutable",
            description="The HRIS employee id, equal to externalId when both are sent",
        ),
        _attribute("department"),
        _attribute("organization", description="The employer"),
        _attribute(
            "manager",
            "complex",
            sub=[
                _attribute("value", description="The manager's userName"),
                _attribute("$ref", "reference"),
                _attribute("displayName", mutability="readOnly"),
            ],
        ),
    ]
    duly = [
        _attribute("location", description="Overrides addresses' locality"),
        _attribute("employmentStatus", description="active, leave or terminated"),
        _attribute("slackUserId", description="Slack member id, e.g. U012AB3CD"),
    ]
    group = [
        _attribute("displayName", required=True, description="The department's name"),
        _attribute(
            "members",
            "complex",
            multi=True,
            sub=[
                _attribute("value", mutability="immutable", description="The member's userName"),
                _attribute("$ref", "reference", mutability="immutable"),
                _attribute("display", mutability="readOnly"),
                _attribute("type", mutability="immutable"),
            ],
        ),
    ]
    out = []
    for urn, name, attributes in (
        (USER, "User", user),
        (GROUP, "Group", group),
        (ENTERPRISE, "EnterpriseUser", enterprise),
        (DULY, "DulyUser", duly),
    ):
        out.append(
            {
                "schemas": [SCHEMA],
                "id": urn,
                "name": name,
                "description": f"{name} as Duly keeps it",
                "attributes": attributes,
                "meta": {"resourceType": "Schema", "location": f"{base}/Schemas/{urn}"},
            }
        )
    return out
