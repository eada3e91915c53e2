"""``python -m trainer.gpu.travel --carry var/gpu_pack``: what the device tool would send, against its 64 MiB.

The tool sends the repository's tracked files (as they are in the working tree), its untracked files that git
does not ignore, a ``shared/`` folder inside the checkout, and the ignored paths named in ``carry``
(/work/.library/device/README.md, "Limits"). This sums them from ``git ls-files`` and the file system, prints one
JSON line (the largest files too) and exits 1 when the total exceeds the limit.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from indexing.settings import REPO_ROOT

__all__ = ["LIMIT_MIB", "travel_report", "main"]

LIMIT_MIB = 64.0
MIB = 2**20


def _git_files(root: Path, *args: str) -> list[str]:
    out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", *args], check=True, capture_output=True).stdout
    return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]


def _files_under(root: Path, rel: str) -> Iterable[str]:
    p = root / rel
    if p.is_file():
        yield rel
    elif p.is_dir():
        for f in sorted(p.rglob("*")):
            if f.is_file() and not f.is_symlink():
                yield str(f.relative_to(root))


def travel_report(root: str | Path = REPO_ROOT, carry: Sequence[str] = (), limit_mib: float = LIMIT_MIB,
                  largest: int = 8) -> dict:
    """Bytes per part (tracked, untracked, shared, each carry path) and in all, ``ok`` = total <= limit."""
    root = Path(root)
    seen: set[str] = set()
    parts: dict[str, int] = {}
    sizes: dict[str, int] = {}

    def add(part: str, paths: Iterable[str]) -> None:
        total = 0
        for rel in paths:
            p = root / rel
            if rel in seen or not p.is_file() or p.is_symlink():
                continue  # a tracked file deleted in the working tree does not travel
            seen.add(rel)
            n = p.stat().st_size
            sizes[rel] = n
            total += n
        parts[part] = total

    add("tracked", _git_files(root))
    add("untracked", _git_files(root, "--others", "--exclude-standard"))
    add("shared", _files_under(root, "shared"))
    missing = []
    for c in carry:
        if not (root / c).exists():
            missing.append(c)
        add(f"carry:{c}", _files_under(root, c))
    total = sum(parts.values())
    top = sorted(sizes.items(), key=lambda kv: -kv[1])[:largest]
    return {"mib": {k: round(v / MIB, 2) for k, v in parts.items()}, "total_mib": round(total / MIB, 2),
            "limit_mib": limit_mib, "headroom_mib": round(limit_mib - total / MIB, 2), "ok": total <= limit_mib * MIB,
            "carry_missing": missing, "largest": [[p, round(n / MIB, 2)] for p, n in top]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.gpu.travel", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--carry", action="append", default=[], help="an ignored path the run carries (repeatable)")
    p.add_argument("--root", default=str(REPO_ROOT))
    p.add_argument("--limit-mib", type=float, default=LIMIT_MIB)
    a = p.parse_args(argv)
    rep = travel_report(a.root, a.carry, a.limit_mib)
    print(json.dumps(rep))
    if rep["carry_missing"]:
        print(f"carry paths missing: {rep['carry_missing']}", file=sys.stderr)
        return 1
    if not rep["ok"]:
        print(f"too large to travel: {rep['total_mib']} MiB > {a.limit_mib} MiB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
