"""Demo mentors and mentees for `duly dev --demo`, chosen so the top match is easy to explain.

The demo learner p-1020 (a junior nurse in Boston who wants to learn IV therapy) is matched
best with p-1021, a Boston nurse five years ahead who teaches IV therapy in person on weekday
evenings; p-1011 (Chicago, 15 years) comes second (remote only), p-1002 (30 years ahead,
no shared specialization) last. p-1030, a Denver technician, is a second mentee.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from activities import mentorship_profiles as profiles
from rules.mentorship_model import MenteeProfile, MentorProfile
from store import mentorship as store

#: Mentor profiles by person id (certifications and track records are computed).
DEMO_MENTORS: dict[str, dict[str, Any]] = {
    "p-1021": {
        "years_experience": 6,
        "specializations": ["IV therapy", "wound care"],
        "max_mentees": 2,
        "communication_preferences": ["in_person", "text"],
        "availability": {"hours_per_month": 6, "preferred_times": ["weekday_evenings"]},
        "city": "Boston",
        "region": "MA",
    },
    "p-1011": {
        "years_experience": 15,
        "specializations": ["IV therapy", "critical care"],
        "max_mentees": 3,
        "communication_preferences": ["video", "phone"],
        "availability": {"hours_per_month": 4, "preferred_times": ["weekday_mornings"]},
        "city": "Chicago",
        "region": "IL",
        "willing_remote": True,
    },
    "p-1002": {
        "years_experience": 31,
        "specializations": ["nursing leadership"],
        "max_mentees": 1,
        "communication_preferences": ["in_person"],
        "availability": {"hours_per_month": 2},
        "city": "Boston",
        "region": "MA",
    },
}

#: Mentee profiles by person id.
DEMO_MENTEES: dict[str, dict[str, Any]] = {
    "p-1020": {
        "level": "junior",
        "years_experience": 1,
        "career_goal": "IV team nurse",
        "specialization_interests": ["IV therapy"],
        "skills_to_develop": ["ultrasound-guided IV placement"],
        "timeline_months": 6,
        "communication_preferences": ["in_person", "video"],
        "availability": {"hours_per_month": 4, "preferred_times": ["weekday_evenings"]},
        "city": "Boston",
        "region": "MA",
        "open_to_remote": True,
    },
    "p-1030": {
        "level": "apprentice",
        "years_experience": 0,
        "specialization_interests": ["critical care"],
        "communication_preferences": ["video"],
        "availability": {"hours_per_month": 3},
        "city": "Denver",
        "region": "CO",
        "open_to_remote": True,
    },
}


def load_demo_mentorship(session: Session) -> int:
    """Write the demo profiles that are missing (an existing profile is left as it is).

    Args:
        session: An open session; the caller commits.

    Returns:
        How many profiles were written.
    """
    written = 0
    have_mentors = {p.person_id for p in profiles.mentor_profiles(session)}
    have_mentees = {p.person_id for p in profiles.mentee_profiles(session)}
    for pid, data in DEMO_MENTORS.items():
        who = store.person(session, pid)
        if who is not None and pid not in have_mentors:
            profiles.save_mentor(session, who, MentorProfile(person_id=pid, **data))
            written += 1
    for pid, data in DEMO_MENTEES.items():
        who = store.person(session, pid)
        if who is not None and pid not in have_mentees:
            profiles.save_mentee(session, who, MenteeProfile(person_id=pid, **data))
            written += 1
    return written
