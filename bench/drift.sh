#!/usr/bin/env bash
# Drift, early: install the NEWEST releases that pyproject.toml's ranges allow (no constraints.txt) in a fresh
# virtual environment, run the fast tests there, and report what broke. Never fails: it exits 0 whatever the
# tests say (CI does not run it; it tells you whether the lock can move).
#
#   bash bench/drift.sh [--keep] [extra pytest args]      # e.g. bash bench/drift.sh -k embedders
#
# Prints the packages whose newest allowed version differs from the lock, the pytest summary, and as its last
# line one JSON object: {"date", "python", "changed": {pkg: [lock, newest]}, "passed", "failed", "errors",
# "failed_tests": [...], "pytest_rc", "install_rc"}.
set -uo pipefail
cd "$(dirname "$0")/.."
keep=0
if [ "${1:-}" = "--keep" ]; then keep=1; shift; fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False \
       TOKENIZERS_PARALLELISM=false PIP_NO_INPUT=1
work="$(mktemp -d -t viranker-drift-XXXXXX)"
[ "$keep" = 1 ] || trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
py="$work/venv/bin/python"
echo "drift venv: $work/venv"
"$py" -m pip install -q --upgrade-strategy eager -e ".[test]" > "$work/install.log" 2>&1
install_rc=$?
if [ "$install_rc" != 0 ]; then tail -20 "$work/install.log"; fi
"$py" -m pip freeze --exclude-editable > "$work/freeze.txt" 2>/dev/null
pytest_rc=-1
if [ "$install_rc" = 0 ]; then
    "$py" -m pytest -q -p no:cacheprovider -m "not slow and not browser" "$@" > "$work/pytest.log" 2>&1
    pytest_rc=$?
    grep -E "^(FAILED|ERROR) " "$work/pytest.log" | head -50
    tail -1 "$work/pytest.log"
fi
python3 - "$work" "$install_rc" "$pytest_rc" <<'PY'
import json, re, sys, time, platform
from pathlib import Path
work, install_rc, pytest_rc = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def pins(path):
    out = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            line, _, marker = line.split("#", 1)[0].strip().partition(";")
            if marker.strip() and ("linux" in marker) != (sys.platform == "linux"):
                continue  # a pin for another platform
            if "==" in line:
                n, v = line.split("==", 1)
                out[n.strip().lower().replace("_", "-")] = v.strip()
    return out
lock, new = pins(Path("constraints.txt")), pins(work / "freeze.txt")
changed = {n: [lock.get(n), v] for n, v in sorted(new.items()) if lock.get(n) != v}
for n, (a, b) in changed.items():
    print(f"  {n}: lock {a} -> newest {b}")
log = (work / "pytest.log").read_text() if (work / "pytest.log").is_file() else ""
def count(word):
    m = re.search(rf"(\d+) {word}", log.splitlines()[-1] if log else "")
    return int(m.group(1)) if m else 0
failed_tests = sorted({ln.split()[1] for ln in log.splitlines() if ln.startswith(("FAILED ", "ERROR "))})
print(json.dumps({"date": time.strftime("%Y-%m-%d"), "python": platform.python_version(), "changed": changed,
                  "passed": count("passed"), "failed": count("failed"), "errors": count("error"),
                  "failed_tests": failed_tests, "pytest_rc": pytest_rc, "install_rc": install_rc}))
PY
exit 0
