"""Mentor matching: rank N mentor profiles for one mentee, fast path versus a naive baseline.

Generates N seeded, synthetic mentor profiles (specializations, cities and regions, capacity,
remote willingness, availability, track records drawn from realistic vocabularies) and a few
mentees, then times on that same input, in the same run (median of ``--repeat`` runs per
mentee, after one warm-up):

* ``naive``: score every mentor with :func:`rules.matching.explain` (six ``FactorScore``
  objects and their explanation strings per mentor), keep the candidates, sort them all, take
  ``--limit``;
* ``fast, cold``: :func:`rules.matching.find_mentors` on the list of profiles (reducing them to
  bit masks is part of the call);
* ``fast, prepared``: the same on profiles reduced once with
  :func:`rules.matching.prepare_mentors` (what a service keeps between requests);
* ``prepare only``: that reduction alone.

Every contender must return the same ranked list as the naive one for every mentee (the script
exits with ``FAIL`` otherwise). A second table (:mod:`bench.matching_endpoint`; skip it with
``--no-store``) times ``GET /mentorship/find-mentor`` over the same N mentors stored in SQLite:
the old read-and-prepare-every-request baseline, the service and the endpoint, each with the
cache of prepared profiles cold and warm. Run ``python -m bench.matching --help`` from the
repository root.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

# Run as a script, Python puts bench/ first on sys.path (and the venv may hold another checkout):
# use this checkout's packages.
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() not in (HERE, ROOT))]

from rules.matching import Match, explain, find_mentors, prepare_mentors  # noqa: E402
from rules.mentorship_model import (  # noqa: E402
    CommunicationStyle,
    MatchingWeights,
    MenteeProfile,
    MentorProfile,
    PreferredTime,
    TrackRecord,
)

#: The issue's target for ranking 10,000 mentors for one mentee.
TARGET_MS = 200.0

SPECIALIZATIONS = [
    f"{kind} {thing}"
    for kind in ("hydraulic", "traction", "mrl", "freight", "residential", "commercial")
    for thing in ("elevators", "escalators", "controls", "door operators", "hvac", "chillers")
]
REGIONS = {
    "Colorado": ["Denver", "Boulder", "Aurora", "Colorado Springs"],
    "Texas": ["Austin", "Dallas", "Houston", "San Antonio", "El Paso"],
    "Oregon": ["Portland", "Salem", "Eugene"],
    "Maine": ["Portland", "Bangor"],
    "Illinois": ["Chicago", "Springfield", "Peoria"],
    "New York": ["New York", "Buffalo", "Albany", "Rochester"],
    "California": ["Los Angeles", "San Diego", "San Jose", "Fresno", "Sacramento"],
    "Florida": ["Miami", "Orlando", "Tampa", "Jacksonville"],
}
PLACES = [(city, region) for region, cities in REGIONS.items() for city in cities]


def mentors(n: int, rng: random.Random) -> list[MentorProfile]:
    """N varied mentor profiles (about 1 in 20 without a location)."""
    out = []
    for index in range(n):
        city, region = rng.choice(PLACES) if rng.random() > 0.05 else (None, None)
        past = rng.randint(0, 12)
        completions = rng.randint(0, past)
        out.append(
            MentorProfile(
                person_id=f"mentor-{index:05d}",
                years_experience=rng.randint(1, 35),
                specializations=rng.sample(SPECIALIZATIONS, rng.randint(1, 4)),
                certifications=rng.sample(["qei", "epa-608", "otis-gen2", "nfpa-70e"], 2),
                equipment_expertise=rng.sample(["otis gen2", "kone monospace", "schindler"], 1),
                accepting_mentees=rng.random() < 0.85,
                max_mentees=rng.randint(1, 4),
                active_mentees=rng.randint(0, 3),
                communication_preferences=rng.sample(list(CommunicationStyle), rng.randint(1, 3)),
                availability={
                    "hours_per_month": rng.randint(2, 16),
                    "preferred_times": rng.sample(list(PreferredTime), rng.randint(0, 3)),
                },
                city=city,
                region=region,
                willing_remote=rng.random() < 0.4,
                track_record=TrackRecord(
                    mentees=past,
                    completions=completions,
                    average_rating=round(rng.uniform(2.5, 5), 1) if past else None,
                ),
            )
        )
    return out


def mentees(count: int, rng: random.Random) -> list[MenteeProfile]:
    """A few mentees: some open to remote mentoring (many candidates), some not."""
    out = []
    for index in range(count):
        city, region = rng.choice(PLACES)
        out.append(
            MenteeProfile(
                person_id=f"mentee-{index}",
                level=rng.choice(["student", "apprentice", "junior", "transitioning"]),
                years_experience=rng.randint(0, 4),
                specialization_interests=rng.sample(SPECIALIZATIONS, rng.randint(1, 3)),
                skills_to_develop=["troubleshooting"],
                communication_preferences=rng.sample(list(CommunicationStyle), 2),
                availability={
                    "hours_per_month": rng.randint(2, 8),
                    "preferred_times": rng.sample(list(PreferredTime), 2),
                },
                city=city,
                region=region,
                open_to_remote=index % 2 == 0,
            )
        )
    return out


def naive(
    mentee: MenteeProfile,
    pool: Sequence[MentorProfile],
    weights: MatchingWeights,
    limit: int,
) -> list[Match]:
    """Score every mentor with its explanations, keep the candidates, sort them all."""
    scored: list[tuple[float, str, Match]] = []
    for mentor in pool:
        if mentor.person_id == mentee.person_id or not mentor.has_capacity:
            continue
        match = explain(mentee, mentor, weights)
        if match.remote and not (mentor.willing_remote and mentee.open_to_remote):
            continue
        scored.append((-sum(f.points for f in match.factors), mentor.person_id, match))
    scored.sort(key=lambda item: (item[0], item[1]))
    return [match for _, _, match in scored[:limit]]


def timed(run: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Median and best milliseconds of ``repeat`` runs after one warm-up, and the last result."""
    result = run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times), result


def cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=10_000, help="mentor profiles (default 10,000)")
    parser.add_argument("--mentees", type=int, default=4, help="mentees ranked for (default 4)")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per mentee (default 7)")
    parser.add_argument("--limit", type=int, default=10, help="matches returned (default 10)")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument(
        "--no-store",
        action="store_true",
        help="skip the second table (find-mentor through the store, service and endpoint)",
    )
    parser.add_argument(
        "--store-repeat", type=int, default=5, help="timed runs per store-side row (default 5)"
    )
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    pool = mentors(args.n, rng)
    seekers = mentees(args.mentees, rng)
    weights = MatchingWeights()
    print(
        f"matching: {args.n:,} mentors, {len(seekers)} mentees, limit {args.limit}, median of"
        f" {args.repeat} runs; Python {platform.python_version()}, {cpu()},"
        f" {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}"
    )
    prepare_ms, prepare_best, prepared = timed(lambda: prepare_mentors(pool), args.repeat)

    header = ("mentee", "candidates", "naive ms", "fast cold ms", "prepared ms", "cold vs naive")
    rows: list[tuple[str, ...]] = []
    summary: dict[str, list[float]] = {"naive": [], "cold": [], "prepared": []}
    for seeker in seekers:
        naive_ms, _, expected = timed(
            partial(naive, seeker, pool, weights, args.limit), args.repeat
        )
        cold_ms, _, cold = timed(
            partial(find_mentors, seeker, pool, weights, args.limit), args.repeat
        )
        warm_ms, _, warm = timed(
            partial(find_mentors, seeker, prepared, weights, args.limit), args.repeat
        )
        for name, got in (("fast, cold", cold), ("fast, prepared", warm)):
            if got != expected:
                print(f"FAIL {name} ranked differently from naive for {seeker.person_id}")
                return 1
        candidates = len(naive(seeker, pool, weights, len(pool)))
        summary["naive"].append(naive_ms)
        summary["cold"].append(cold_ms)
        summary["prepared"].append(warm_ms)
        remote = "remote ok" if seeker.open_to_remote else "local only"
        rows.append(
            (
                f"{seeker.person_id} ({remote})",
                f"{candidates:,}",
                f"{naive_ms:.1f}",
                f"{cold_ms:.1f}",
                f"{warm_ms:.1f}",
                f"{naive_ms / cold_ms:.1f}x faster",
            )
        )
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        print(" | ".join(cells))
    naive_all, cold_all, warm_all = (statistics.median(summary[k]) for k in summary)
    print(f"prepare_mentors alone: {prepare_ms:.1f} ms (best {prepare_best:.1f})")
    print(
        f"median over mentees: naive {naive_all:.1f} ms, fast cold {cold_all:.1f} ms"
        f" ({naive_all / cold_all:.1f}x), fast prepared {warm_all:.1f} ms"
        f" ({naive_all / warm_all:.1f}x)"
    )
    worst = max(max(summary["cold"]), max(summary["prepared"]))
    verdict = "PASS" if worst < TARGET_MS else "MISS"
    print(f"{verdict}: slowest fast ranking {worst:.1f} ms vs target {TARGET_MS:.0f} ms")
    print("every fast ranking equals the naive one")
    code = 0 if verdict == "PASS" else 2
    if not args.no_store:
        from bench.matching_endpoint import run

        code = max(code, run(pool, seekers[0], repeat=args.store_repeat, limit=args.limit))
    return code


if __name__ == "__main__":
    sys.exit(main())
