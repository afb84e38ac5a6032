"""Who a pack entry covers: by role, department, location or employer, minus exceptions.

One model for every section that picks people out: a requirement's ``applies_to``
(:mod:`rules.model`) and a learning path's ``auto_enrol`` (:mod:`rules.tracks_model`). Pure
pydantic, importing nothing of Duly's, so both can build on it without importing each other.

Example (either key)::

    applies_to: {roles: [physician], except: {locations: [Oslo]}}
    auto_enrol: {all: true}
"""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["AppliesTo", "Audience"]


class Audience(BaseModel):
    """Who a requirement covers: every listed dimension must match (any value within one)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    roles: list[str] = Field(default_factory=list)
    departments: list[str] = Field(default_factory=list)
    locations: list[str] = Field(default_factory=list)
    employers: list[str] = Field(default_factory=list)

    def is_empty(self) -> bool:
        """Whether no dimension is listed."""
        return not (self.roles or self.departments or self.locations or self.employers)

    def matches(self, roles: list[str], department: str, location: str, employer: str) -> bool:
        """Whether a person with these attributes is in the audience (empty: nobody)."""
        if self.is_empty():
            return False
        return (
            (not self.roles or bool(set(self.roles) & set(roles)))
            and (not self.departments or department in self.departments)
            and (not self.locations or location in self.locations)
            and (not self.employers or employer in self.employers)
        )


class AppliesTo(Audience):
    """A requirement's audience: ``all: true`` or some dimensions, minus ``except``."""

    #: The error when neither ``all`` nor a dimension is given; a subclass names its own key.
    missing_message: ClassVar[str] = (
        "say who this applies to: 'all: true', or list roles, departments, locations or employers"
    )

    all: bool = False
    except_: Audience | None = Field(default=None, alias="except")

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    @model_validator(mode="after")
    def _one_way(self) -> Self:
        if self.all and not self.is_empty():
            raise ValueError(
                "use either 'all: true' or roles/departments/locations/employers, not both"
            )
        if not self.all and self.is_empty():
            raise ValueError(self.missing_message)
        return self

    def applies(self, roles: list[str], department: str, location: str, employer: str) -> bool:
        """Whether a person with these attributes owes the requirement."""
        included = self.all or self.matches(roles, department, location, employer)
        if not included:
            return False
        return not (self.except_ and self.except_.matches(roles, department, location, employer))
