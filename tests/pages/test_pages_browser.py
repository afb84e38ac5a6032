"""Each role's daily work in Chromium: sign in, read, act, download; accessibility (axe-core)."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from playwright.sync_api import expect
from sqlalchemy import select

from store.models import AuditEntry, UsedSignInLink
from tests.pages.conftest import (
    LEARNER,
    LEARNER_EMAIL,
    PEER,
    LiveSite,
    last_email_text,
    shot,
    sign_in_with_token,
)

#: An offline accessibility check in the spirit of axe's basic rules: every form control has a
#: label, images and charts have text alternatives, the landmarks exist, one h1, the page has a
#: language, buttons and links have names, ids are unique.
A11Y = """
() => {
  const problems = [];
  const visible = (el) => el.type !== 'hidden';
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (!visible(el)) continue;
    const named = (el.labels && el.labels.length) || el.getAttribute('aria-label')
      || el.getAttribute('aria-labelledby');
    if (!named) problems.push('unlabelled ' + el.tagName + ' ' + (el.name || el.id));
  }
  for (const img of document.querySelectorAll('img')) {
    if (!img.hasAttribute('alt')) problems.push('img without alt ' + img.src);
  }
  for (const svg of document.querySelectorAll('svg')) {
    const named = svg.getAttribute('aria-label') || svg.querySelector('title');
    if (svg.getAttribute('role') !== 'img' || !named) problems.push('svg without role/title');
  }
  for (const el of document.querySelectorAll('button, a[href]')) {
    const name = (el.getAttribute('aria-label') || el.textContent || '').trim();
    if (!name) problems.push('nameless ' + el.tagName);
  }
  if (!document.documentElement.lang) problems.push('no lang');
  if (document.querySelectorAll('main').length !== 1) problems.push('not one main');
  if (!document.querySelector('header')) problems.push('no header landmark');
  if (!document.querySelector('footer')) problems.push('no footer landmark');
  if (document.querySelectorAll('h1').length !== 1) problems.push('not one h1');
  const ids = [...document.querySelectorAll('[id]')].map((e) => e.id);
  const dup = ids.filter((id, i) => ids.indexOf(id) !== i);
  if (dup.length) problems.push('duplicate ids ' + dup.join(','));
  for (const table of document.querySelectorAll('table')) {
    if (!table.querySelector('th')) problems.push('table without headers');
  }
  return problems;
}
"""


#: axe-core impacts that fail a page: every one (the pages had none of any impact when axe was
#: added; serious and critical are the floor if a moderate or minor rule ever proves noisy).
AXE_FAILS = ("critical", "serious", "moderate", "minor")


def check_a11y(page: Any) -> None:
    """The home-made structural checks, then axe-core's rules, both offline.

    axe-core comes inside the ``axe-playwright-python`` wheel (``axe.min.js``) and is injected
    into the page by Playwright: nothing is downloaded at run time.
    """
    from axe_playwright_python.sync_playwright import Axe

    problems = page.evaluate(A11Y)
    assert problems == [], f"{page.url}: {problems}"
    found = Axe().run(page).response["violations"]
    failing = [v for v in found if v["impact"] in AXE_FAILS]
    report = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:5]}"
        for v in found
    ]
    assert not failing, f"{page.url}: axe-core violations: {report}"


def test_sign_in_by_link_see_obligations_acknowledge(site: LiveSite, context: Any) -> None:
    page = context.new_page()
    page.goto("/ui/me")
    expect(page.get_by_role("heading", name="Sign in to Duly")).to_be_visible()
    check_a11y(page)
    shot(page, "sign-in")
    page.get_by_label("Work email").fill(LEARNER_EMAIL)
    page.get_by_role("button", name="Send link").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    check_a11y(page)

    email = last_email_text(site.sendgrid)
    found = re.search(r"(/ui/sign-in/link/[A-Za-z0-9._-]+)", email)
    assert found, email
    link = found.group(1)
    # The ledger keeps the message without the link (it is a credential).
    with site.db.session() as session:
        from store.models import Notification

        row = session.scalar(
            select(Notification).where(Notification.kind == "sign_in").order_by(Notification.id)
        )
        assert row is not None and link.split("/")[-1] not in row.body
        assert row.status == "sent" and row.provider == "sendgrid"

    page.goto(link)  # a GET never signs in: it asks for a click
    check_a11y(page)
    with site.db.session() as session:
        assert session.scalar(select(UsedSignInLink)) is None
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/ui/me")
    cookie = next(c for c in context.cookies() if c["name"] == "duly_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # Every obligation of every kind, with its status, date and next step.
    table = page.locator("#obligations + table")
    for text in ("HIPAA Privacy", "Fire Safety", "Basic Life Support", "Mentoring programme"):
        expect(table.get_by_text(text).first).to_be_visible()
    expect(table.get_by_text("overdue").first).to_be_visible()
    expect(page.get_by_text("Overdue: complete the course today.")).to_be_visible()
    expect(page.get_by_text("DULY-BLS-7Q2X-9KPM")).to_be_visible()
    check_a11y(page)
    shot(page, "my-compliance")

    page.get_by_role("button", name="Acknowledge HIPAA Privacy").click()
    expect(page.get_by_text("your acknowledgement is recorded")).to_be_visible()
    assert (f"assignment/{LEARNER}/hipaa/1", "acknowledge") in [
        (w, name) for w, name, _ in site.temporal.signals
    ]
    signal = next(arg for w, name, arg in site.temporal.signals if name == "acknowledge")
    assert signal.actor == f"learner:{LEARNER}" and signal.channel == "web"

    # The link works once.
    other = context.browser.new_context(base_url=site.url)
    try:
        again = other.new_page()
        again.goto(link)
        again.get_by_role("button", name="Sign in").click()
        expect(again.get_by_text("already been used")).to_be_visible()
    finally:
        other.close()

    # Sign out revokes the link session: the old cookie no longer opens the page.
    value = cookie["value"]
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/ui/sign-in")
    answer = httpx.get(f"{site.url}/ui/me", cookies={"duly_session": value})
    assert answer.status_code == 401


def test_a_form_without_the_csrf_token_is_refused(site: LiveSite, context: Any) -> None:
    page = context.new_page()
    sign_in_with_token(page, site.tokens["learner"])
    cookie = next(c for c in context.cookies() if c["name"] == "duly_session")
    answer = httpx.post(
        f"{site.url}/ui/me/preferences",
        data={"channels": "email"},
        cookies={"duly_session": cookie["value"]},
    )
    assert answer.status_code == 403 and "did not come from Duly" in answer.text


def test_keyboard_only_preferences_and_focus_order(site: LiveSite, context: Any) -> None:
    page = context.new_page()
    sign_in_with_token(page, site.tokens["learner"])
    page.goto("/ui/me")
    check_a11y(page)
    # Focus order follows the document: the skip link first, then the navigation.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    order = []
    for _ in range(6):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.textContent.trim()"))
    assert order[:2] == ["Duly", "My compliance"], order
    dom_order = page.evaluate(
        "() => [...document.querySelectorAll('a[href], button, input:not([type=hidden]), "
        "select, textarea, summary')].filter(e => e.checkVisibility()).slice(0, 8)"
        ".map(e => e.textContent.trim())"
    )
    assert order == dom_order[1:7], (order, dom_order)
    # Quiet hours by keyboard only: focus the field, type, submit with Enter.
    page.focus("#quiet_start")
    page.keyboard.type("21:00")
    page.keyboard.press("Tab")
    page.keyboard.type("07:00")
    page.keyboard.press("Enter")
    expect(page.get_by_text("preferences are saved")).to_be_visible()
    assert page.locator("#quiet_start").input_value() == "21:00"


def test_manager_extends_a_due_date_through_the_form(site: LiveSite, context: Any) -> None:
    page = context.new_page()
    sign_in_with_token(page, site.tokens["manager"])
    page.goto(f"/ui/people/{PEER}")
    check_a11y(page)
    new_date = date.today() + timedelta(days=50)
    workflow_id = f"assignment/{PEER}/fire-safety/1"
    row = page.locator("tr", has_text=workflow_id)
    row.get_by_text("Extend due date").click()
    row.get_by_label("New due date").fill(new_date.isoformat())
    row.get_by_label("Reason").fill("on leave for three weeks")
    row.get_by_role("button", name="Extend").click()
    expect(page.get_by_text("The due date is extended.")).to_be_visible()
    extended = page.locator("tr", has_text=workflow_id)
    expect(extended.get_by_text(new_date.isoformat())).to_be_visible()
    update = next(u for u in site.temporal.updates or [] if u[0] == workflow_id)
    assert update[1] == "extend_due_date" and update[2].actor == "manager:p-1010"
    with site.db.session() as session:
        entry = session.scalar(
            select(AuditEntry).where(
                AuditEntry.action == "assignment.extend", AuditEntry.target == workflow_id
            )
        )
        assert entry is not None and entry.actor == "manager:p-1010"
    shot(page, "person")

    # Remind now: once per obligation per day.
    row = page.locator("tr", has_text=workflow_id)
    row.get_by_role("button", name=re.compile("^Remind")).click()
    expect(page.get_by_text("The reminder was sent.")).to_be_visible()
    page.locator("tr", has_text=workflow_id).get_by_role(
        "button", name=re.compile("^Remind")
    ).click()
    expect(page.get_by_text("already reminded about this today")).to_be_visible()


def test_a_manager_cannot_open_someone_outside_their_team(site: LiveSite) -> None:
    answer = httpx.get(f"{site.url}/ui/people/p-1025", headers=site.bearer("manager"))
    assert answer.status_code == 404


def test_auditor_finds_an_obligation_and_reads_its_timeline(site: LiveSite, context: Any) -> None:
    page = context.new_page()
    sign_in_with_token(page, site.tokens["auditor"])
    page.wait_for_url("**/ui/audit")
    expect(page.get_by_text("Chain verified")).to_be_visible()
    page.get_by_label("Find an obligation").fill("p-1020")
    page.get_by_role("button", name="Find").click()
    page.get_by_role("link", name=f"assignment/{LEARNER}/hipaa/1").click()
    page.wait_for_url("**/ui/audit/obligations/**")
    timeline = page.locator("h2:has-text('Timeline') + table")
    # Decisions from the recorded history: rule and pack hash; the message and its receipt.
    expect(timeline.get_by_text("decision").first).to_be_visible()
    assert "rule" in timeline.inner_text() and "pack_hash" in timeline.inner_text()
    expect(page.get_by_text("sg-123", exact=True)).to_be_visible()
    check_a11y(page)
    shot(page, "auditor-timeline")
    with page.expect_download() as info:
        page.get_by_role("link", name="Download raw history (JSON)").click()
    data = json.loads(open(info.value.path()).read())  # noqa: SIM115
    assert data["events"][0]["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED"


def test_learner_pages_are_scoped(site: LiveSite) -> None:
    for path in ("/ui/audit", f"/ui/people/{PEER}"):
        answer = httpx.get(f"{site.url}{path}", headers=site.bearer("learner"))
        assert answer.status_code in (403, 404), path


def test_managers_numbers_equal_the_apis_and_csv_downloads(site: LiveSite, context: Any) -> None:
    page = context.new_page()
    sign_in_with_token(page, site.tokens["manager"])
    page.wait_for_url("**/ui/team")
    api = httpx.get(
        f"{site.url}/compliance/summary", params={"scope": "team"}, headers=site.bearer("manager")
    ).json()
    shown = {
        "total": "#kpi-total",
        "completed": "#kpi-completed",
        "in_progress": "#kpi-in-progress",
        "overdue": "#kpi-overdue",
        "due_30": "#kpi-due-30",
        "cert_expiring_30": "#kpi-expiring",
        "cert_expired": "#kpi-expired",
        "people": "#kpi-people",
    }
    for field, selector in shown.items():
        assert page.locator(selector).inner_text() == str(api[field]), field
    assert api["total"] >= 9 and api["overdue"] >= 3  # the seeded team, not an empty page
    assert page.locator("#kpi-rate").inner_text() == f"{api['rate'] * 100:.0f}%"
    by_report = httpx.get(
        f"{site.url}/compliance/breakdown",
        params={"scope": "team", "by": "report"},
        headers=site.bearer("manager"),
    ).json()
    table = page.locator("table[aria-labelledby=by-report]")
    for group in by_report:
        row = table.locator("tr", has_text=group["label"])
        assert row.locator("td").nth(0).inner_text() == str(group["total"]), group
    # Charts are inline SVG with a text alternative.
    chart_title = page.locator("svg[role=img] title").first.text_content() or ""
    assert chart_title.endswith("last 12 months")
    check_a11y(page)
    shot(page, "team-dashboard")

    with page.expect_download() as info:
        page.get_by_role("link", name="Download CSV of Overdue").click()
    text = open(info.value.path(), encoding="utf-8").read()  # noqa: SIM115
    lines = text.splitlines()
    assert lines[0] == "person,name,obligation,requirement,kind,status,due,expires"
    assert any("p-1022" in line and "HIPAA Privacy" in line for line in lines[1:])
    # The formula-like title is neutralised with a leading quote.
    assert '"\'=HYPERLINK(""http://x"")"' in text, text

    # A person's drill-down from the by-report table.
    table.get_by_role("link", name="Ava Fakeworth").click()
    page.wait_for_url(f"**/ui/people/{LEARNER}")


def test_hr_organisation_dashboard(site: LiveSite, context: Any) -> None:
    page = context.new_page()
    sign_in_with_token(page, site.tokens["hr"])
    page.wait_for_url("**/ui/org")
    api = httpx.get(
        f"{site.url}/compliance/summary", params={"scope": "org"}, headers=site.bearer("hr")
    ).json()
    assert page.locator("#kpi-total").inner_text() == str(api["total"])
    assert page.locator("#kpi-overdue").inner_text() == str(api["overdue"])
    for heading in ("By category", "By department", "By location", "By team"):
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    at_risk = page.locator("table[aria-labelledby=at-risk]")
    expect(at_risk.get_by_text("Sofia Sandbox")).to_be_visible()
    check_a11y(page)
    shot(page, "org-dashboard")
    with page.expect_download() as info:
        page.get_by_role("link", name="Download CSV of By department").click()
    header = open(info.value.path(), encoding="utf-8").readline().strip()  # noqa: SIM115
    assert header.startswith("total,completed,in_progress,overdue,due_30,rate")


def test_auditor_as_of_answer(site: LiveSite, context: Any) -> None:
    page = context.new_page()
    sign_in_with_token(page, site.tokens["auditor"])
    page.goto(f"/ui/audit/obligations/assignment/{LEARNER}/hipaa/1")
    ten_days_ago = (datetime.now(UTC) - timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%S")
    page.get_by_label("At (UTC)").fill(ten_days_ago)
    page.get_by_role("button", name="Answer").click()
    answer = page.locator("#as-of-answer")
    expect(answer).to_contain_text("assigned")
    expect(answer).to_contain_text("open")  # the rule recorded then, not today's
    check_a11y(page)
    shot(page, "auditor-as-of")
    page.get_by_label("At (UTC)").fill(
        (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    )
    page.get_by_role("button", name="Answer").click()
    expect(page.locator("#as-of-answer")).to_contain_text("due-within-7")

    page.goto("/ui/audit")
    page.get_by_label("At (UTC)").fill(ten_days_ago)
    page.get_by_role("button", name="Answer").click()
    expect(page.locator("#as-of-answer")).to_contain_text("Organisation")


def test_auditor_downloads_an_evidence_pack_and_hr_a_pdf(site: LiveSite, context: Any) -> None:
    import hashlib
    import zipfile

    page = context.new_page()
    sign_in_with_token(page, site.tokens["auditor"])
    page.goto("/ui/audit")
    page.get_by_label("Person id", exact=True).fill(LEARNER)
    page.get_by_label("From", exact=True).fill((date.today() - timedelta(days=60)).isoformat())
    page.get_by_label("To", exact=True).fill(date.today().isoformat())
    with page.expect_download() as info:
        page.get_by_role("button", name="Download evidence pack (ZIP)").click()
    with zipfile.ZipFile(info.value.path()) as pack:
        names = pack.namelist()
        assert "SHA256SUMS" in names, names
        for line in pack.read("SHA256SUMS").decode().splitlines():
            digest, name = line.split(maxsplit=1)
            assert hashlib.sha256(pack.read(name.lstrip("*"))).hexdigest() == digest, name
        assert any(LEARNER in pack.read(n).decode("utf-8", "replace") for n in names)
    hr = httpx.get(f"{site.url}/ui/report.pdf", params={"scope": "org"}, headers=site.bearer("hr"))
    assert hr.status_code == 200 and hr.content.startswith(b"%PDF")
