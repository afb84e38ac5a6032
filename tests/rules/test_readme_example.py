"""The pack example in the README is a real, valid pack whose test passes (docs cannot rot)."""

from __future__ import annotations

import re
from pathlib import Path

from rules.cases import run_tests
from rules.loader import load_pack

README = Path(__file__).parents[2] / "README.md"


def test_readme_pack_example_loads_and_its_test_passes(tmp_path: Path) -> None:
    section = README.read_text().split("### What a pack holds", 1)[1]
    example = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert example is not None
    (tmp_path / "pack.yaml").write_text(example.group(1))
    pack = load_pack(tmp_path)
    assert pack.info.name == "medical-practice"
    results = run_tests(pack)
    assert results and all(r.passed for r in results), [r.diff() for r in results]
