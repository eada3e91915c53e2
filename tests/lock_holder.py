"""A helper process that holds an index lock, for tests of what other processes see while it is held."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def lock_held_elsewhere(index_dir: Path) -> Iterator[subprocess.Popen]:
    """Start a Python process that takes ``IndexLock(index_dir)``; yield once it holds it, release on exit."""
    code = textwrap.dedent(f"""
        import sys
        from indexing.generations import IndexLock
        with IndexLock({str(index_dir)!r}):
            print("locked", flush=True)
            sys.stdin.readline()
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=REPO)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.communicate("\n", timeout=30)
