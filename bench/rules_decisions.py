"""Status-decision throughput: durable_rules (one by one, batched) versus plain Python.

For every pack (default: each directory under ``rules/packs/``) the script generates N synthetic
fact sets from the literals the pack's status rules compare facts with (seeded, so every run and
every contender sees the same input), then times on those same facts, in the same run:

* ``python``: :class:`rules.engine.PythonEvaluator` (first match in plain Python), the limit;
* ``durable single``: :meth:`rules.engine.StatusEngine.evaluate`, one obligation per call;
* ``durable batch``: :meth:`rules.engine.StatusEngine.evaluate_many`, ``--chunk`` per call.

Both durable contenders must pick the same rule as Python for every fact set (the script aborts
otherwise). It then profiles one batch run and says where the time goes. Run
``python bench/rules_decisions.py --help``.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

# This file is bench/rules_decisions.py and Python puts bench/ first on sys.path when running it, so
# `import rules` would import this script: drop bench/ so it finds Duly's rules package.
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

from rules import engine as engine_module  # noqa: E402
from rules.engine import PythonEvaluator, StatusEngine, checked_facts, engine_for  # noqa: E402
from rules.facts import FACTS, FactType  # noqa: E402
from rules.loader import load_pack  # noqa: E402
from rules.model import Pack  # noqa: E402

#: Decisions per second batch mode must reach on one core.
TARGET = 50_000
#: Obligations in the re-evaluation the projection is for.
PROJECTED = 1_000_000
#: The value a string fact takes when it matches no literal.
OTHER = "other"
#: How far around each integer literal generated ints go.
SPREAD = 3

Facts = dict[str, Any]
#: The clock every timing uses: wall time by default; ``--clock cpu`` takes this process's CPU
#: time instead, which a machine shared with other work disturbs far less (single-threaded).
clock: Callable[[], float] = time.perf_counter


# --------------------------------------------------------------------------------------------
# Synthetic facts


def literals(pack: Pack) -> dict[str, set[Any]]:
    """Per fact, every literal some status rule compares it with."""
    out: dict[str, set[Any]] = {}
    for rule in pack.status_rules:
        for name, values in rule.condition.constants().items():
            out.setdefault(name, set()).update(values)
    return out


def fact_generator(pack: Pack, rng: random.Random) -> Callable[[], Facts]:
    """A function returning one complete, random fact set around the pack's literals."""
    used = literals(pack)
    pickers: list[tuple[str, Callable[[], Any]]] = []
    for name, (kind, _) in FACTS.items():
        values = sorted(used.get(name, set()), key=repr)
        if kind is FactType.INT:
            near = sorted({v + d for v in values for d in range(-SPREAD, SPREAD + 1)}) or list(
                range(-SPREAD, SPREAD + 1)
            )
            pickers.append((name, lambda near=near: rng.choice(near)))
        elif kind is FactType.BOOL:
            pickers.append((name, lambda: rng.random() < 0.5))
        elif kind is FactType.STR:
            choices = [*values, OTHER]
            pickers.append((name, lambda choices=choices: rng.choice(choices)))
        else:
            pool = [*values, OTHER]
            pickers.append(
                (name, lambda pool=pool: rng.sample(pool, rng.randint(0, min(3, len(pool)))))
            )

    def generate() -> Facts:
        return {name: pick() for name, pick in pickers}

    return generate


def synthetic_facts(pack: Pack, n: int, seed: int) -> list[Facts]:
    """``n`` fact sets for ``pack``, the same for the same seed."""
    generate = fact_generator(pack, random.Random(f"{seed}:{pack.info.name}"))
    return [generate() for _ in range(n)]


# --------------------------------------------------------------------------------------------
# Timing


@dataclass(frozen=True)
class Result:
    pack: str
    rules: int
    contender: str
    n: int
    seconds: float
    names: list[str]

    @property
    def rate(self) -> float:
        return self.n / self.seconds

    @property
    def micros(self) -> float:
        return self.seconds / self.n * 1e6


def run_bare(
    predicates: Sequence[tuple[str, Callable[[Facts], bool]]], facts: Sequence[Facts]
) -> list[str]:
    """First match with the compiled conditions alone, on facts already complete: the limit."""
    names: list[str] = []
    append = names.append
    for f in facts:
        for name, holds in predicates:
            if holds(f):
                append(name)
                break
    return names


def run_python(evaluator: PythonEvaluator, facts: Sequence[Facts]) -> list[str]:
    return [d.rule for d in evaluator.evaluate_many(facts)]


def run_single(engine: StatusEngine, facts: Sequence[Facts]) -> list[str]:
    return [engine.evaluate(f).rule for f in facts]


def run_batch(engine: StatusEngine, facts: Sequence[Facts], chunk: int) -> list[str]:
    names: list[str] = []
    for start in range(0, len(facts), chunk):
        names.extend(d.rule for d in engine.evaluate_many(facts[start : start + chunk]))
    return names


def timed(
    fn: Callable[[Sequence[Facts]], list[str]],
    facts: Sequence[Facts],
    repeat: int,
    check: Callable[[list[str]], None],
) -> tuple[float, list[str]]:
    """Best seconds of ``repeat`` runs of ``fn(facts)``, after an untimed warm-up.

    ``check`` sees the rule names of every run (outside the timed region).
    """
    fn(facts[: min(len(facts), 500)])
    best, names = float("inf"), []
    for _ in range(repeat):
        began = clock()
        names = fn(facts)
        best = min(best, clock() - began)
        check(names)
    return best, names


def same_as(pack: str, contender: str, facts: Sequence[Facts], want: list[str]):
    """A check that aborts loudly unless a run picked exactly the rules Python picked."""

    def check(got: list[str]) -> None:
        if len(got) != len(want):
            raise SystemExit(f"FAIL {pack}/{contender}: {len(got)} decisions for {len(want)} facts")
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            if g != w:
                raise SystemExit(
                    f"FAIL {pack}/{contender}: fact set #{i} decided by rule {g!r}, Python says"
                    f" {w!r}; facts: {facts[i]}"
                )

    return check


def bench_pack(
    pack: Pack, facts: list[Facts], chunk: int, single_n: int, repeat: int
) -> list[Result]:
    name, count = pack.info.name, len(pack.status_rules)
    python = PythonEvaluator(pack.content_hash, pack.status_rules)
    engine = engine_for(pack)
    want = run_python(python, facts)
    seconds, _ = timed(
        lambda f: run_python(python, f), facts, repeat, same_as(name, "python", facts, want)
    )
    results = [Result(name, count, "python first-match", len(facts), seconds, want)]
    # The limit: the same compiled conditions, first match, no checks, no Decision objects.
    predicates = [(rule.name, rule.condition.evaluate) for rule in pack.status_rules]
    complete = [checked_facts(f) for f in facts]
    seconds, got = timed(
        lambda f: run_bare(predicates, f),
        complete,
        repeat,
        same_as(name, "bare predicates", facts, want),
    )
    results.append(Result(name, count, "bare predicates", len(facts), seconds, got))
    single = facts[:single_n]
    seconds, got = timed(
        lambda f: run_single(engine, f),
        single,
        repeat,
        same_as(name, "durable single", single, want[: len(single)]),
    )
    results.append(Result(name, count, "durable single", len(single), seconds, got))
    label = f"durable batch ({chunk}/call)"
    seconds, got = timed(
        lambda f: run_batch(engine, f, chunk), facts, repeat, same_as(name, label, facts, want)
    )
    results.append(Result(name, count, label, len(facts), seconds, got))
    return results


# --------------------------------------------------------------------------------------------
# Where the time goes


FACTS_CHECK = "facts check/completion"
MESSAGE = "message building"
ENCODE_MESSAGES = "batch JSON (heads, join)"
ENGINE = "C engine (durable_rules_engine.*)"
DECODE = "action results (rule, keys)"
DECISION = "Decision construction"
OTHER_STAGE = "other (loops, de-duplication, lock)"
# The engine no longer goes through durable's Python Host (no per-action dispatch, callbacks or
# state re-encoding); should durable's Python code show up again, it is counted as "other".
ENCODE_STATE = DISPATCH = CALLBACK = OTHER_STAGE
#: Profile categories, in print order.
STAGES = (
    FACTS_CHECK,
    MESSAGE,
    ENCODE_MESSAGES,
    ENGINE,
    DECODE,
    DECISION,
    OTHER_STAGE,
)

Key = tuple[str, int, str]
#: The regular expressions that read durable's actions (see ``StatusEngine._run``).
_REGEX_METHODS = (
    "<method 'match' of 're.Pattern' objects>",
    "<method 'findall' of 're.Pattern' objects>",
)


def _own_stage(key: Key) -> str | None:
    """The stage a function's own time belongs to; None: charge it to its callers."""
    file, _, func = key
    file = file.replace(os.sep, "/")
    engine_py = file.endswith("rules/engine.py")
    if func in ("<listcomp>", "<setcomp>", "<dictcomp>", "<genexpr>"):
        return None  # a comprehension is part of the function it is written in
    if func.startswith("<built-in method durable_rules_engine."):
        return ENGINE
    if file.endswith("rules/facts.py") or (
        engine_py and func in ("checked_facts", "_all_str", "<lambda>")
    ):
        return FACTS_CHECK
    if (engine_py and func in ("_action", "_decoded")) or func in _REGEX_METHODS:
        return DECODE  # the action's rule and key (a regular expression, JSON as a fallback)
    if file == engine_module.MESSAGE_SOURCE or (engine_py and func == "_message"):
        return MESSAGE
    if file.endswith("json/encoder.py") or (engine_py and func == "_batch_json"):
        return ENCODE_MESSAGES  # the engine writes each batch of messages once
    if file.endswith("json/decoder.py") or (file.endswith("json/__init__.py") and func == "loads"):
        return DECODE
    if engine_py and func == "run":
        return CALLBACK
    if "/durable/" in file:
        return DISPATCH
    if (
        (engine_py and func in ("_decision", "_made"))
        or "/pydantic" in file
        or "validate_python" in func
    ):
        return DECISION
    if engine_py or file.endswith(("bench/rules_decisions.py", "/uuid.py", "/threading.py")):
        return OTHER_STAGE
    return None  # builtins, comprehensions, json.dumps, ...: whoever called them


def _is_dumps(key: Key) -> bool:
    return key[0].replace(os.sep, "/").endswith("json/__init__.py") and key[2] == "dumps"


def stage_shares(stats: pstats.Stats) -> tuple[dict[str, float], list[tuple[float, str, str]]]:
    """Seconds of own time per stage, and the top functions by own time.

    A function without a stage of its own (a builtin, ``json.dumps``) is split among its callers
    in proportion to the time spent under it from each (cProfile keeps one level of callers).
    """
    table: dict[Key, Any] = stats.stats  # type: ignore[attr-defined]
    memo: dict[Key, dict[str, float]] = {}

    def split(key: Key, seen: frozenset[Key]) -> dict[str, float]:
        """How one second of ``key``'s own time divides among stages."""
        if key in memo:
            return memo[key]
        own = _own_stage(key)
        if own is not None:
            memo[key] = {own: 1.0}
            return memo[key]
        callers = table[key][4]
        total = sum(edge[3] for edge in callers.values())
        shares: dict[str, float] = {}
        if callers and total > 0 and key not in seen:
            for caller, edge in callers.items():
                weight = edge[3] / total
                if _is_dumps(key):  # durable encodes messages, and session state per action
                    parts = {ENCODE_MESSAGES if "assert_event" in caller[2] else ENCODE_STATE: 1.0}
                else:
                    parts = split(caller, seen | {key}) if caller in table else {}
                for stage, part in parts.items():
                    shares[stage] = shares.get(stage, 0.0) + weight * part
        memo[key] = shares or {OTHER_STAGE: 1.0}
        return memo[key]

    seconds = dict.fromkeys(STAGES, 0.0)
    top: list[tuple[float, str, str]] = []
    for key, (_cc, _nc, tottime, _ct, _callers) in table.items():
        parts = split(key, frozenset())
        for stage, part in parts.items():
            seconds[stage] += tottime * part
        label = pstats.func_std_string(key).replace(str(ROOT) + os.sep, "")
        top.append((tottime, label, max(parts, key=parts.__getitem__)))
    top.sort(reverse=True)
    return seconds, top


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    """The fastest of ``repeat`` runs of ``fn``, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        began = clock()
        fn()
        best = min(best, clock() - began)
    return best


def standalone(pack: Pack, facts: Sequence[Facts], chunk: int, repeat: int) -> dict[str, float]:
    """µs per decision of the stages that can be timed alone, with no profiler, as the engine
    runs them: same functions, same batch size, ``chunk`` obligations alive at a time (the
    messages of each chunk's distinct posted facts, as the engine de-duplicates them)."""
    engine = engine_for(pack)
    size = engine_module.BATCH_SIZE
    fields = engine._fields[pack.status_rules[0].name]
    made = engine_module._made
    batch_json = engine_module._batch_json
    write = engine._body
    chunks = [facts[i : i + chunk] for i in range(0, len(facts), chunk)]
    completes = [[checked_facts(f) for f in part] for part in chunks]
    distinct = [list(dict.fromkeys(write(f) for f in c)) for c in completes]

    def each(stage: Callable[[Any], object], parts: list) -> Callable[[], None]:
        def run() -> None:
            for part in parts:
                stage(part)

        return run

    seconds = {
        FACTS_CHECK: each(lambda part: [checked_facts(f) for f in part], chunks),
        MESSAGE: each(lambda c: [write(f) for f in c], completes),
        ENCODE_MESSAGES: each(
            lambda b: [batch_json(b[i : i + size], "1f") for i in range(0, len(b), size)],
            distinct,
        ),
        DECISION: each(lambda c: [made(fields, f) for f in c], completes),
    }
    return {stage: best_of(repeat, fn) / len(facts) * 1e6 for stage, fn in seconds.items()}


def where_time_goes(pack: Pack, facts: list[Facts], chunk: int, batch: Result, repeat: int) -> None:
    engine = engine_for(pack)
    profiler = cProfile.Profile()
    began = clock()
    profiler.runcall(run_batch, engine, facts, chunk)
    profiled = clock() - began
    stats = pstats.Stats(profiler)
    seconds, top = stage_shares(stats)
    total = sum(seconds.values()) or 1.0
    alone = standalone(pack, facts, chunk, repeat)
    print(
        f"\nWhere the time goes: {pack.info.name}, durable batch, {len(facts)} decisions"
        f" (unprofiled {batch.micros:.1f} µs/decision; under cProfile {profiled:.2f} s,"
        f" {profiled / batch.seconds:.1f}x slower)"
    )
    rest = max(batch.micros - sum(alone.values()), 0.0)
    profiled_rest = sum(seconds[s] for s in STAGES if s not in alone) or 1.0
    estimate = {
        stage: alone[stage] if stage in alone else rest * seconds[stage] / profiled_rest
        for stage in STAGES
    }
    header = (
        f"{'stage':<36} {'cProfile share':>14} {'µs alone':>9} {'est. µs':>8} {'est. share':>10}"
    )
    print(header)
    print("-" * len(header))
    for stage in STAGES:
        measured = f"{alone[stage]:.2f}" if stage in alone else "-"
        print(
            f"{stage:<36} {seconds[stage] / total:>14.1%} {measured:>9} {estimate[stage]:>8.2f}"
            f" {estimate[stage] / batch.micros:>10.1%}"
        )
    print(
        "  (µs alone: the stage's own code timed without a profiler on the same facts; est.:"
        " the unprofiled\n   batch total minus those, split by the remaining cProfile shares)"
    )
    print("top functions by own time under cProfile (tottime s, stage):")
    for tottime, label, stage in top[:12]:
        print(f"  {tottime:7.3f}  {label[:78]:<78} {stage}")


# --------------------------------------------------------------------------------------------
# Output


def print_table(results: list[Result]) -> None:
    header = (
        f"{'pack':<20} {'rules':>5} {'contender':<28} {'N':>7} {'decisions/s':>12}"
        f" {'µs/decision':>12} {'vs python':>10}"
    )
    print(header)
    print("-" * len(header))
    base: dict[str, float] = {}
    for r in results:
        base.setdefault(r.pack, r.rate)
        print(
            f"{r.pack:<20} {r.rules:>5} {r.contender:<28} {r.n:>7} {r.rate:>12,.0f}"
            f" {r.micros:>12.2f} {r.rate / base[r.pack]:>9.3f}x"
        )


def print_goals(results: list[Result]) -> None:
    """The two ratios the issue sets goals for, per pack."""
    print("\nGoals: durable batch >= 0.75x python; python within 10x of bare predicates")
    by = {(r.pack, r.contender.split(" (")[0]): r for r in results}
    for pack in dict.fromkeys(r.pack for r in results):
        python, bare = by[(pack, "python first-match")], by[(pack, "bare predicates")]
        batch = by[(pack, "durable batch")]
        ratio, slower = batch.rate / python.rate, bare.rate / python.rate
        print(
            f"  {pack:<20} batch/python {ratio:.2f}x {'PASS' if ratio >= 0.75 else 'MISS'};"
            f"  python {slower:.1f}x slower than bare {'PASS' if slower <= 10 else 'MISS'}"
        )


def print_projection(results: list[Result]) -> None:
    print(
        f"\nBatch mode: projected time to re-evaluate {PROJECTED:,} obligations; target"
        f" >= {TARGET:,} decisions/s on one core"
    )
    for r in results:
        if r.contender.startswith("durable batch"):
            verdict = "PASS" if r.rate >= TARGET else "MISS"
            print(
                f"  {r.pack:<20} {PROJECTED / r.rate:>7.1f} s  ({r.rate:,.0f}/s, "
                f"{r.rate / TARGET:.2f}x target)  {verdict}"
            )


def rule_coverage(pack: Pack, names: list[str]) -> str:
    hits = Counter(names)
    missed = [r.name for r in pack.status_rules if not hits[r.name]]
    text = f"{len(pack.status_rules) - len(missed)}/{len(pack.status_rules)} rules decide"
    return text + (f" (never: {', '.join(missed)})" if missed else "")


def distinct_share(pack: Pack, facts: Sequence[Facts]) -> str:
    """How many distinct posted fact sets durable batch actually sends to durable_rules."""
    engine = engine_for(pack)
    write = engine._body  # the message body is the de-duplication key
    keys = {write(checked_facts(f)) for f in facts}
    return (
        f"{len(keys):,} distinct posted fact sets of {len(facts):,}"
        f" ({len(keys) / len(facts):.0%}; durable decides each once per batch call)"
    )


def machine() -> str:
    try:
        durable = metadata.version("durable_rules")
    except metadata.PackageNotFoundError:
        durable = "?"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"python {platform.python_version()}, durable_rules {durable}, {os.cpu_count()} CPUs"
        f" ({cpu}), {platform.system()} {platform.machine()}"
    )


def default_packs() -> list[Path]:
    return sorted(p for p in (ROOT / "rules" / "packs").iterdir() if p.is_dir())


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=200_000, help="fact sets per pack")
    parser.add_argument(
        "--pack", type=Path, action="append", help="pack directory (repeatable; default: all)"
    )
    parser.add_argument("--chunk", type=int, default=10_000, help="obligations per batch call")
    parser.add_argument(
        "--single-n", type=int, help="fact sets for durable single (default: all N)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (best is kept)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the facts")
    parser.add_argument("--no-profile", action="store_true", help="skip 'where the time goes'")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="time with the wall clock, or this process's CPU time (steadier on a busy machine)",
    )
    args = parser.parse_args()
    global clock
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    packs = [load_pack(path) for path in (args.pack or default_packs())]
    print(machine())
    print(
        f"N = {args.n} fact sets per pack (seed {args.seed}), batch chunk {args.chunk},"
        f" engine batch size {engine_module.BATCH_SIZE}, single N = {args.single_n or args.n},"
        f" best of {args.repeat}, {args.clock} clock, load {load}"
    )
    results: list[Result] = []
    facts_of: dict[str, list[Facts]] = {}
    for pack in packs:
        facts = synthetic_facts(pack, args.n, args.seed)
        facts_of[pack.info.name] = facts
        pack_results = bench_pack(pack, facts, args.chunk, args.single_n or args.n, args.repeat)
        print(f"  {pack.info.name}: {rule_coverage(pack, pack_results[0].names)}")
        print(f"  {pack.info.name}: {distinct_share(pack, facts)}")
        results.extend(pack_results)
    print()
    print_table(results)
    print_goals(results)
    print_projection(results)
    if not args.no_profile:
        for pack in packs:
            batch = next(
                r
                for r in results
                if r.pack == pack.info.name and r.contender.startswith("durable batch")
            )
            where_time_goes(pack, facts_of[pack.info.name], args.chunk, batch, args.repeat)


if __name__ == "__main__":
    cli()
