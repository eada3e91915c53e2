"""The promises of the README's set-up section: two commands, both through the lock, the test command is CI's,
and the lock pins every dependency inside pyproject's ranges."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _setup_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def _lock() -> dict[str, str]:
    """{package: pinned version} for this platform (lines may carry environment markers)."""
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        (spec,) = req.specifier  # one exact pin per line
        assert spec.operator == "==", f"constraints.txt line {line!r} is not an exact pin"
        if req.marker is None or req.marker.evaluate():
            assert canonicalize_name(req.name) not in pins, f"{req.name} pinned twice for this platform"
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def test_exactly_two_setup_commands_and_ci_runs_the_test_command():
    app, tests = _setup_commands()  # exactly two: unpacking fails otherwise
    assert app.startswith("pip install -c constraints.txt -e .") and app.endswith("python app.py")
    assert tests.startswith('pip install -c constraints.txt -e ".[test]"') and "python -m pytest" in tests
    ci_lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert tests in ci_lines, "the README's test command must be .ci/run's, verbatim"
    assert any(ln.startswith("python3 -m venv") for ln in ci_lines), "CI must make a fresh virtual environment"


def test_the_lock_pins_every_dependency_inside_the_declared_ranges():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = _lock()
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    for req in reqs:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"lock {name}=={pins[name]} outside {req}"
    # every pyproject requirement with an upper bound on a major that broke us keeps it
    capped = {canonicalize_name(r.name) for r in reqs if any(s.operator == "<" for s in r.specifier)}
    assert {"transformers", "sentence-transformers", "gradio"} <= capped
    assert "flagembedding" not in pins  # does not import under transformers 5 (README, Models)
    if sys.platform == "linux":  # the CPU build, never PyPI's CUDA wheel
        assert pins["torch"].endswith("+cpu")
