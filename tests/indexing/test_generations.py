"""Generations: layout, atomic CURRENT swap, rollback, cleanup, lock, change detection."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from indexing import generations as g
from tests.lock_holder import lock_held_elsewhere


def _complete(index_dir: Path, passages: int = 1) -> str:
    name, path = g.new_generation(index_dir)
    (path / "passages.jsonl").write_text("", encoding="utf-8")
    g.write_manifest(index_dir, name, {"created_at": time.time(), "counts": {"passages": passages}})
    return name


def test_layout_and_switch(tmp_path: Path) -> None:
    idx = tmp_path / "indexes" / "demo"
    assert g.current(idx) is None and g.list_generations(idx) == []
    a = _complete(idx, 3)
    assert (idx / "generations" / a / "manifest.json").is_file()
    assert g.switch(idx, a) is None
    assert (idx / "CURRENT").read_text() == a + "\n" and g.current(idx) == a
    assert g.current_path(idx) == idx / "generations" / a
    b = _complete(idx, 5)
    assert b > a  # names sort by creation
    assert g.switch(idx, b) == a and g.current(idx) == b
    infos = g.list_generations(idx)
    assert [(i.name, i.status, i.is_current, i.counts) for i in infos] == [
        (a, "complete", False, {"passages": 3}),
        (b, "complete", True, {"passages": 5}),
    ]
    assert not list(idx.glob(".CURRENT.tmp*"))  # no temp file left behind


def test_incomplete_generation_cannot_be_served_and_is_cleaned(tmp_path: Path) -> None:
    idx = tmp_path / "i"
    a = _complete(idx)
    g.switch(idx, a)
    inc, _ = g.new_generation(idx)
    assert not g.is_complete(idx, inc)
    assert [i.status for i in g.list_generations(idx)] == ["complete", "incomplete"]
    with pytest.raises(g.GenerationError, match="incomplete"):
        g.switch(idx, inc)
    assert g.current(idx) == a
    assert g.cleanup_incomplete(idx) == [inc]
    assert [i.name for i in g.list_generations(idx)] == [a]


def test_rollback_delete_and_prune(tmp_path: Path) -> None:
    idx = tmp_path / "i"
    names = [_complete(idx) for _ in range(4)]
    g.switch(idx, names[-1])
    assert g.rollback(idx) == names[-2] and g.current(idx) == names[-2]
    with pytest.raises(g.GenerationError, match="current"):
        g.delete_generation(idx, names[-2])
    g.delete_generation(idx, names[0])
    assert [i.name for i in g.list_generations(idx)] == names[1:]
    # prune keeps the newest N complete ones but never the current one
    assert g.prune(idx, keep=1) == [names[1]]
    assert [i.name for i in g.list_generations(idx)] == [names[2], names[3]]
    with pytest.raises(g.GenerationError):
        g.switch(idx, "../escape")


def test_current_watcher_notices_a_swap(tmp_path: Path) -> None:
    idx = tmp_path / "i"
    a, b = _complete(idx), _complete(idx)
    w = g.CurrentWatcher(idx)
    assert w.current is None and not w.changed()
    g.switch(idx, a)
    assert w.changed() and w.current == a
    assert not w.changed()
    g.switch(idx, a)  # rewritten with the same content: not a change
    assert not w.changed()
    g.switch(idx, b)
    assert w.changed() and w.current == b


def test_lock_excludes_other_processes_and_is_reentrant(tmp_path: Path) -> None:
    idx = tmp_path / "i"
    idx.mkdir()
    with lock_held_elsewhere(idx):
        t = time.monotonic()
        with pytest.raises(g.IndexBusy, match="another process"):
            g.IndexLock(idx, timeout=0.3).acquire()
        assert time.monotonic() - t < 5
        with pytest.raises(g.IndexBusy):
            g.switch(idx, "g000001-x", lock_timeout=0)
    with g.IndexLock(idx), g.IndexLock(idx):  # re-entrant within one process
        name = _complete(idx)
        g.switch(idx, name)  # takes the lock again inside
    assert g.current(idx) == name


def test_atomic_write_leaves_old_content_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    idx = tmp_path / "i"
    a = _complete(idx)
    g.switch(idx, a)
    b = _complete(idx)

    def boom(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(g.os, "replace", boom)
    with pytest.raises(OSError):
        g.switch(idx, b)
    monkeypatch.undo()
    assert g.current(idx) == a
