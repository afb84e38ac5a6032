"""The people directory import, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from duly.demo import DEMO_PEOPLE_CSV, load_demo_people
from store.db import Database
from store.models import Person
from store.people import (
    REDACTED,
    ImportReport,
    PeopleFileError,
    RowError,
    import_people,
    parse_csv,
    parse_json,
)

HEADER = (
    "external_id,name,email,phone,slack_user_id,roles,department,location,time_zone,"
    "employer,manager,employment_status\n"
)
ORG = HEADER + (
    "a-1,Ada Boss,ada@demo.duly.example,+15550100001,U0A1,executive,Administration,Boston,"
    "America/New_York,Duly Health,,active\n"
    "a-2,Ben Middle,ben@demo.duly.example,+15550100002,U0A2,manager;nurse,Nursing,Chicago,"
    "America/Chicago,Duly Health,a-1,active\n"
    "a-3,Cy Staff,cy@demo.duly.example,+15550100003,,nurse|technician,Nursing,Chicago,"
    "America/Chicago,Acme Staffing,a-2,leave\n"
)


def run_csv(db: Database, text: str) -> ImportReport:
    rows, errors = parse_csv(text)
    with db.session() as session:
        return import_people(session, rows, errors)


def people(db: Database) -> dict[str, Person]:
    with db.session() as session:
        return {p.external_id: p for p in session.scalars(select(Person))}


def manager_of(db: Database) -> dict[str, str | None]:
    return {ext: (p.manager.external_id if p.manager else None) for ext, p in people(db).items()}


def errors_by_row(report: ImportReport) -> dict[int, list[RowError]]:
    out: dict[int, list[RowError]] = {}
    for error in report.errors:
        out.setdefault(error.row, []).append(error)
    return out


def test_first_import_creates_everyone_with_their_fields(db: Database) -> None:
    report = run_csv(db, ORG)

    assert (report.created, report.updated, report.unchanged, report.rejected) == (3, 0, 0, 0)
    assert report.errors == []
    everyone = people(db)
    cy = everyone["a-3"]
    assert cy.name == "Cy Staff"
    assert cy.email == "cy@demo.duly.example"
    assert cy.phone == "+15550100003"
    assert cy.slack_user_id is None
    assert cy.roles == ["nurse", "technician"]
    assert (cy.department, cy.location, cy.time_zone) == ("Nursing", "Chicago", "America/Chicago")
    assert cy.employer == "Acme Staffing"
    assert cy.employment_status == "leave"
    assert everyone["a-2"].roles == ["manager", "nurse"]
    assert manager_of(db) == {"a-1": None, "a-2": "a-1", "a-3": "a-2"}


def test_reimport_counts_unchanged_and_updates_only_what_changed(db: Database) -> None:
    run_csv(db, ORG)

    again = run_csv(db, ORG)
    assert (again.created, again.updated, again.unchanged, again.rejected) == (0, 0, 3, 0)

    # Cy moves to Denver under Ada; Ben changes nothing; a new person joins.
    changed = (
        ORG.replace("Acme Staffing,a-2,leave", "Acme Staffing,a-1,active").replace(
            "Nursing,Chicago,America/Chicago,Acme", "Nursing,Denver,America/Denver,Acme"
        )
        + "a-4,Di New,,,,front_desk,Front Office,London,Europe/London,Duly Health,a-3,\n"
    )
    report = run_csv(db, changed)
    assert (report.created, report.updated, report.unchanged, report.rejected) == (1, 1, 2, 0)
    everyone = people(db)
    assert everyone["a-3"].location == "Denver"
    assert everyone["a-3"].time_zone == "America/Denver"
    assert everyone["a-3"].employment_status == "active"
    assert everyone["a-4"].time_zone == "Europe/London"
    assert everyone["a-4"].email is None
    assert manager_of(db) == {"a-1": None, "a-2": "a-1", "a-3": "a-1", "a-4": "a-3"}


def test_a_manager_change_alone_counts_as_an_update(db: Database) -> None:
    run_csv(db, ORG)
    report = run_csv(db, "external_id,name,manager\na-3,Cy Staff,a-1\n")
    assert (report.updated, report.unchanged) == (1, 0)
    assert manager_of(db)["a-3"] == "a-1"


def test_columns_absent_from_the_file_are_left_alone_but_blank_cells_clear(db: Database) -> None:
    run_csv(db, ORG)

    report = run_csv(db, "external_id,name,department\na-3,Cy Staff,\na-2,Ben Middle,Nursing\n")

    assert (report.updated, report.unchanged) == (1, 1)
    cy = people(db)["a-3"]
    assert cy.department is None  # blank cell: cleared
    assert cy.email == "cy@demo.duly.example"  # no email column: untouched
    assert manager_of(db)["a-3"] == "a-2"  # no manager column: untouched


def test_bad_rows_are_reported_with_row_column_and_reason_while_good_rows_land(
    db: Database,
) -> None:
    text = HEADER + (
        "g-1,Good One,good1@demo.duly.example,+15550100011,U0G1,nurse,Nursing,Boston,"
        "America/New_York,Duly Health,,\n"  # row 2
        "b-1,Bad Email,not-an-email,,,nurse,Nursing,Boston,America/New_York,,g-1,\n"  # row 3
        "b-2,Bad Zone,,,,nurse,Nursing,Boston,America/Bostonia,,g-1,\n"  # row 4
        "b-3,,,,,nurse,Nursing,Boston,,,g-1,\n"  # row 5
        "b-4,Unknown Boss,,,,nurse,Nursing,Boston,,,nobody-here,\n"  # row 6
        "g-1,Duplicate Of Good,,,,nurse,Nursing,Boston,,,,\n"  # row 7
        "\n"  # row 8: blank, skipped but counted
        "g-2,Good Two,,+1 (555) 010-0012,,pharmacist,Pharmacy,Seattle,America/Los_Angeles,"
        "Duly Health,g-1,terminated\n"  # row 9
        "b-5,Bad Status,,,,nurse,,,,,,retired\n"  # row 10
        "b-6,Bad Phone,,555-0100,,nurse,,,,,,\n"  # row 11
    )

    report = run_csv(db, text)

    assert (report.created, report.updated, report.unchanged) == (2, 0, 0)
    assert report.rejected == 7
    by_row = errors_by_row(report)
    assert sorted(by_row) == [3, 4, 5, 6, 7, 10, 11]
    assert [(e.column, e.value) for e in by_row[3]] == [("email", REDACTED)]
    assert "email must look like" in by_row[3][0].message
    assert [(e.column, e.value) for e in by_row[4]] == [("time_zone", "America/Bostonia")]
    assert "unknown time zone 'America/Bostonia'" in by_row[4][0].message
    assert [(e.column, e.message) for e in by_row[5]] == [("name", "name is required")]
    assert [(e.column, e.value) for e in by_row[6]] == [("manager", "nobody-here")]
    assert "unknown manager 'nobody-here'" in by_row[6][0].message
    assert [(e.column, e.value) for e in by_row[7]] == [("external_id", "g-1")]
    assert "duplicate external_id 'g-1': row 2 already has it" in by_row[7][0].message
    assert [e.column for e in by_row[10]] == ["employment_status"]
    assert "active, leave, terminated" in by_row[10][0].message
    assert [(e.column, e.value) for e in by_row[11]] == [("phone", REDACTED)]
    assert "E.164" in by_row[11][0].message

    everyone = people(db)
    assert set(everyone) == {"g-1", "g-2"}
    assert everyone["g-1"].name == "Good One"  # the duplicate later row did not win
    assert everyone["g-2"].phone == "+15550100012"  # punctuation stripped to E.164
    assert everyone["g-2"].employment_status == "terminated"
    assert manager_of(db)["g-2"] == "g-1"


def test_a_report_of_a_rejected_new_person_is_rejected_too_and_says_why(db: Database) -> None:
    text = "external_id,name,email,manager\nm-1,Bad Boss,broken,\nm-2,Report,,m-1\n"

    report = run_csv(db, text)

    assert report.created == 0
    assert report.rejected == 2
    assert [(e.row, e.column) for e in report.errors] == [(2, "email"), (3, "manager")]
    assert "unknown manager 'm-1'" in report.errors[1].message


def test_errors_never_contain_email_or_phone_values(db: Database) -> None:
    email = "leaky.person@secret-hospital.example"
    bad_email = "leaky.person-at-secret-hospital"
    phone = "+1555019999"
    bad_phone = "++4477009000"
    text = (
        "external_id,name,email,phone,manager,time_zone\n"
        f"e-1,Leaky One,{bad_email},{phone},,UTC\n"
        f"e-2,Leaky Two,{email},{bad_phone},,UTC\n"
        f"e-3,Leaky Three,{email},{phone},nobody,UTC\n"
        f"e-4,Leaky Four,{email},{phone},e-4,UTC\n"
        f"e-4,Leaky Dup,{email},{phone},,Nowhere/Zone\n"
    )

    report = run_csv(db, text)

    assert report.rejected == 5
    dumped = report.model_dump_json()
    for secret in (email, bad_email, phone, bad_phone, "leaky.person", "1555019999", "7700900"):
        assert secret not in dumped
    assert {e.value for e in report.errors if e.column in {"email", "phone"}} == {REDACTED}


def test_self_management_is_rejected(db: Database) -> None:
    report = run_csv(db, "external_id,name,manager\nboss,Own Boss,boss\nok,Fine,\n")

    assert report.created == 1
    assert report.rejected == 1
    [error] = report.errors
    assert (error.row, error.column, error.value) == (2, "manager", "boss")
    assert error.message.startswith("manager cycle: boss -> boss")
    assert set(people(db)) == {"ok"}


def test_a_two_person_cycle_is_rejected_and_the_rest_still_lands(db: Database) -> None:
    text = "external_id,name,manager\nx,Ex,y\ny,Why,x\nz,Zed,top\ntop,Top,\n"

    report = run_csv(db, text)

    assert (report.created, report.rejected) == (2, 2)
    messages = {e.row: e.message for e in report.errors}
    assert messages[2].startswith("manager cycle: x -> y -> x")
    assert messages[3].startswith("manager cycle: y -> x -> y")
    assert all(e.column == "manager" for e in report.errors)
    assert manager_of(db) == {"z": "top", "top": None}


def test_a_cycle_through_people_already_in_the_directory_is_rejected(db: Database) -> None:
    run_csv(db, ORG)  # a-1 <- a-2 <- a-3

    # Making the CEO report to Cy would close a-1 -> a-3 -> a-2 -> a-1.
    report = run_csv(db, "external_id,name,manager\na-1,Ada Boss,a-3\nn-1,New,a-3\n")

    assert (report.created, report.updated, report.rejected) == (1, 0, 1)
    [error] = report.errors
    assert error.row == 2
    assert error.column == "manager"
    assert error.message.startswith("manager cycle: a-1 -> a-3 -> a-2 -> a-1")
    assert manager_of(db) == {"a-1": None, "a-2": "a-1", "a-3": "a-2", "n-1": "a-3"}


def test_a_file_may_reorganise_the_chain_as_long_as_the_result_has_no_cycle(
    db: Database,
) -> None:
    run_csv(db, ORG)  # a-1 <- a-2 <- a-3

    # Swap: a-3 becomes the top and manages a-1; a-1 manages a-2. Acyclic once all apply.
    report = run_csv(db, "external_id,name,manager\na-1,Ada Boss,a-3\na-3,Cy Staff,\n")

    assert report.errors == []
    assert report.updated == 2
    assert manager_of(db) == {"a-1": "a-3", "a-2": "a-1", "a-3": None}


def test_json_import_accepts_a_list_or_a_people_object(db: Database) -> None:
    payload = {
        "people": [
            {
                "external_id": "j-1",
                "name": "Jay Son",
                "email": "jay@demo.duly.example",
                "roles": ["Nurse", "manager"],
                "time_zone": "Europe/London",
            },
            {
                "external_id": "j-2",
                "name": "Jo Son",
                "roles": "technician;physician",
                "manager": "j-1",
            },
            {"external_id": "j-3", "name": "Ju Son", "manager_external_id": "j-2", "salary": 1},
            {"external_id": "j-4", "email": "no-name@demo.duly.example"},
            "not an object",
        ]
    }

    rows, errors = parse_json(json.dumps(payload).encode())
    with db.session() as session:
        report = import_people(session, rows, errors)

    assert (report.created, report.rejected) == (3, 2)
    by_row = errors_by_row(report)
    assert "unknown key(s) ignored: salary (first in row 3)" in by_row[0][0].message
    assert by_row[0][0].file_level
    assert [(e.column, e.message) for e in by_row[4]] == [("name", "name is required")]
    assert by_row[5][0].message == "expected an object with external_id and name"
    everyone = people(db)
    assert everyone["j-1"].roles == ["nurse", "manager"]
    assert everyone["j-1"].time_zone == "Europe/London"
    assert everyone["j-2"].roles == ["technician", "physician"]
    assert everyone["j-2"].time_zone == "UTC"
    assert manager_of(db) == {"j-1": None, "j-2": "j-1", "j-3": "j-2"}

    # A bare list works too, and re-importing the same people changes nothing.
    rows, errors = parse_json(payload["people"][:3])
    with db.session() as session:
        again = import_people(session, rows, [])
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b'{"people": [', "not valid JSON: Expecting value at line 1 column 13"),
        (b'{"staff": []}', 'expected a JSON list of people or an object {"people": [...]}'),
        (b"42", "expected a JSON list"),
    ],
)
def test_unusable_json_raises_a_file_error(data: bytes, needle: str) -> None:
    with pytest.raises(PeopleFileError) as caught:
        parse_json(data)
    assert needle in str(caught.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "the file is empty"),
        ("external_id,email\np-1,a@b.example\n", "missing required column(s): name"),
        ("id,full name\n1,Ann\n", "missing required column(s): external_id, name"),
        ("external_id,name,name\np-1,A,B\n", "column(s) named more than once: name"),
    ],
)
def test_unusable_csv_raises_a_file_error_naming_what_to_fix(text: str, needle: str) -> None:
    with pytest.raises(PeopleFileError) as caught:
        parse_csv(text)
    assert needle in str(caught.value)
    assert all(e.row == 1 and e.file_level for e in caught.value.errors)


def test_unknown_columns_are_one_file_level_error_and_the_rows_still_land(
    db: Database,
) -> None:
    text = "\ufeffExternal ID,Name,Cost Center,shoe_size\np-1,Ann,CC-9,42\np-2,Bo,,\n"

    report = run_csv(db, text)

    assert (report.created, report.rejected) == (2, 0)
    [error] = report.errors
    assert error.row == 1
    assert error.file_level
    assert "unknown column(s) ignored: cost_center, shoe_size" in error.message
    assert "Allowed columns: external_id, name, email" in error.message


def test_a_shifted_row_with_too_many_cells_is_rejected(db: Database) -> None:
    report = run_csv(db, "external_id,name,department\np-1,Smith, Ann,Nursing\np-2,Bo,Pharmacy\n")

    assert (report.created, report.rejected) == (1, 1)
    assert report.errors[0].row == 2
    assert "4 cells but the header has 3 columns" in report.errors[0].message


def test_semicolon_delimited_exports_are_read(db: Database) -> None:
    report = run_csv(db, 'external_id;name;roles\np-1;Ann;"nurse;manager"\n')

    assert report.created == 1
    assert people(db)["p-1"].roles == ["nurse", "manager"]


def test_the_demo_org_imports_cleanly_with_a_deep_chain(db: Database) -> None:
    with db.session() as session:
        report = load_demo_people(session)

    assert report.errors == []
    assert report.created == len(DEMO_PEOPLE_CSV.read_text().strip().splitlines()) - 1
    assert 30 <= report.created <= 40

    chain = manager_of(db)
    tops = [ext for ext, boss in chain.items() if boss is None]
    assert len(tops) == 1

    def depth(ext: str) -> int:
        boss = chain[ext]
        return 0 if boss is None else 1 + depth(boss)

    assert max(depth(ext) for ext in chain) >= 3
    everyone = people(db)
    assert all(p.email and p.email.endswith("@demo.duly.example") for p in everyone.values())
    assert {p.employer for p in everyone.values()} == {"Duly Health", "Acme Staffing"}
    assert {p.time_zone for p in everyone.values()} == {
        "America/New_York",
        "America/Chicago",
        "America/Denver",
        "America/Los_Angeles",
        "Europe/London",
    }

    with db.session() as session:
        again = load_demo_people(session)
    assert (again.created, again.updated, again.unchanged) == (0, 0, report.created)


def test_the_user_name_column_sets_scim_user_names_unique_ignoring_case(db: Database) -> None:
    """``user_name`` (the SCIM userName) is imported like any column, refused when someone
    else would have it too (ignoring case, against stored userNames and external ids), and
    never shown in an error (it is often an email address)."""
    header = "external_id,name,user_name\n"
    report = run_csv(
        db,
        header + "u-1,Una,una@example.org\nu-2,Uli,uli@example.org\nu-3,Ute,\n",
    )
    assert (report.created, report.rejected) == (3, 0)
    assert {k: p.user_name for k, p in people(db).items()} == {
        "u-1": "una@example.org",
        "u-2": "uli@example.org",
        "u-3": None,
    }
    report = run_csv(
        db,
        header
        # a swap inside one file is fine; the same name twice is not (the later row loses);
        # someone else's external id is their userName (SCIM shows it) so it is taken too
        + "u-1,Una,ULI@example.org\nu-2,Uli,una@example.org\n"
        + "u-4,Uwe,Una@Example.org\nu-5,Udo,U-3\n",
    )
    assert (report.created, report.updated, report.rejected) == (0, 2, 2), report.errors
    by_row = errors_by_row(report)
    assert [(e.column, e.value) for e in by_row[4]] == [("user_name", REDACTED)]
    assert by_row[4][0].message.startswith("user_name is taken: row 3 of this file sets it")
    assert by_row[5][0].message.startswith("user_name is taken: someone in the directory has it")
    assert "example.org" not in json.dumps(report.model_dump())
    found = people(db)
    assert (found["u-1"].user_name, found["u-2"].user_name) == (
        "ULI@example.org",
        "una@example.org",
    )
    assert "u-4" not in found and "u-5" not in found
    # A blank cell clears it; a file without the column leaves it alone.
    assert run_csv(db, header + "u-1,Una,\n").updated == 1
    assert run_csv(db, "external_id,name\nu-2,Uli B\n").updated == 1
    found = people(db)
    assert (found["u-1"].user_name, found["u-2"].user_name) == (None, "una@example.org")
    refused = run_csv(db, header + "u-6,Ula,has space\n")
    assert refused.errors[0].message.startswith("user_name must have no spaces")
