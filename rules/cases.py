"""A pack's own test cases, and whether a pack may be deployed (pure: no database, no Temporal)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rules.engine import NoRuleMatched, engine_for
from rules.lint import Level, TemplateCheck, lint
from rules.model import Pack


@dataclass(frozen=True)
class CaseResult:
    """One pack test case's outcome."""

    name: str
    passed: bool
    expected_status: str
    expected_rule: str | None
    got_status: str | None
    got_rule: str | None
    error: str | None = None

    def diff(self) -> list[str]:
        """Expected vs got, as ``-``/``+`` lines (empty when the case passed)."""
        if self.passed:
            return []
        lines = [f"- expected: status={self.expected_status}"]
        if self.expected_rule:
            lines[0] += f" rule={self.expected_rule}"
        if self.error:
            lines.append(f"+ got:      error: {self.error}")
        else:
            lines.append(f"+ got:      status={self.got_status} rule={self.got_rule}")
        return lines


def run_tests(pack: Pack) -> list[CaseResult]:
    """Run the pack's own test cases through durable_rules."""
    engine = engine_for(pack)
    results = []
    for case in pack.tests:
        expect = case.expect
        try:
            decision = engine.evaluate(case.facts)
        except NoRuleMatched as error:
            results.append(
                CaseResult(case.name, False, expect.status, expect.rule, None, None, str(error))
            )
            continue
        passed = decision.status == expect.status and (
            expect.rule is None or decision.rule == expect.rule
        )
        results.append(
            CaseResult(
                case.name, passed, expect.status, expect.rule, decision.status, decision.rule
            )
        )
    return results


def deploy_blockers(
    pack: Pack, people: Sequence[Any] | None, *, templates: TemplateCheck | None
) -> list[str]:
    """Why ``pack`` must not be deployed: lint errors and failing pack tests (empty: deployable).

    Args:
        pack: The pack to deploy.
        people: The directory to lint against (None: directory checks skipped).
        templates: The template checks (see :func:`rules.lint.lint`).
    """
    problems = [str(f) for f in lint(pack, people, templates=templates) if f.level is Level.ERROR]
    for case in run_tests(pack):
        if not case.passed:
            problems.append(f"test '{case.name}' fails: " + " / ".join(case.diff()))
    return problems
