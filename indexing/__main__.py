"""Command line for indexes: ``python -m indexing <command> --index NAME ...``.

Commands::

    build    INPUT... [--format F] [--id-field F --title-field F --text-field F] [--embedder e5-small|none|...]
             [--max-words 250 --overlap 30] [--strict] [--precomputed META.json]
    add      INPUT... [--replace]            new generation = current + inputs
    delete   ID... [--ids-file FILE]         new generation = current - ids (passage or document ids)
    stats                                    the current generation's manifest summary
    list                                     all generations with status and counts
    switch   GEN | --rollback                serve another complete generation
    cleanup  [--keep N]                      remove incomplete (and old) generations
    search   QUERY [-k 10] [--field both]    BM25 query against the current generation

Exit status: 0 success, 1 a clear error on stderr (bad input, busy index, unreachable Qdrant...), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from indexing import generations as gens
from indexing import settings
from indexing.corpus import (
    DEFAULT_MAX_WORDS,
    DEFAULT_OVERLAP,
    FORMATS,
    IngestError,
    IngestReport,
    load_corpus,
)
from indexing.embedders import EmbedderMismatch, LazyEmbedder

MAX_PROBLEMS_IN_MANIFEST = 1000


class CliError(Exception):
    """A fatal problem reported as ``error: ...`` with exit status 1."""


# ------------------------------------------------------------------------------------------- embedders
def load_embedder(name: str) -> Any:
    """Embedder by name via :func:`indexing.embedders.load_embedder`; a failure becomes a :class:`CliError`
    (``EmbedderUnavailable`` and friends carry their own how-to-fix)."""
    from indexing.embedders import load_embedder as _load

    try:
        return _load(name)
    except Exception as err:  # noqa: BLE001 - reported as "error: ..." with exit status 1
        raise CliError(f"cannot load embedder {name!r}: {err}") from err


def _embedder_for_change(args: argparse.Namespace, manifest: dict[str, Any] | None) -> Any:
    """--embedder for add/delete: 'auto' (default) = the one recorded in the current manifest."""
    want = (manifest or {}).get("embedder")
    if args.embedder == "none":
        return None
    if args.embedder == "auto":
        if not want:
            return None
        if not want.get("name"):
            raise CliError(
                f"the index has vectors from {want['model_id']!r} but no embedder name was recorded; "
                "pass --embedder NAME"
            )
        # delete/add often need no new embeddings at all: the model loads on first use
        return LazyEmbedder(want["name"], want["model_id"], int(want["dim"]), loader=load_embedder)
    return load_embedder(args.embedder)


# --------------------------------------------------------------------------------------------- helpers
def _ingest(args: argparse.Namespace, existing_ids: list[str] | tuple = ()) -> tuple[list, IngestReport]:
    passages, report = load_corpus(
        args.inputs,
        args.format,
        id_field=args.id_field,
        title_field=args.title_field,
        text_field=args.text_field,
        auto_id=args.auto_id,
        max_words=args.max_words,
        overlap=args.overlap,
        strict=args.strict,
        existing_ids=existing_ids,
    )
    print(report.summary(max_problems=args.show_problems))
    if not passages:
        raise CliError("no passages to index (see the problems above)")
    return passages, report


def _ingest_extra(report: IngestReport) -> dict[str, Any]:
    d = report.to_dict()
    d["problems"] = d["problems"][:MAX_PROBLEMS_IN_MANIFEST]
    d["skipped_files"] = d["skipped_files"][:MAX_PROBLEMS_IN_MANIFEST]
    return {"ingest": d}


def _record_origins(args: argparse.Namespace, passages: list) -> None:
    """The documents' ``source``/``url`` for the app's results, as an upload records them
    (:func:`indexing.uploads.record_origins`; only documents ingestion kept)."""
    from indexing.uploads import record_origins

    record_origins(args.index, args.inputs, {p.doc_id for p in passages}, args.home)


def _print_manifest(m: dict[str, Any]) -> None:
    c = m.get("counts", {})
    emb = m.get("embedder") or {}
    vec = m.get("vectors") or {}
    print(
        f"index {m.get('index')} generation {m.get('generation')} ({m.get('operation', 'build')}, {m.get('created')})"
    )
    print(
        f"  passages {c.get('passages', 0):,}  documents {c.get('documents', 0):,}  vectors {c.get('vectors', 0):,}"
    )
    if emb:
        where = vec.get("url", "local") + " / " + vec.get("collection", "")
        print(
            f"  embedder {emb.get('name') or '-'} = {emb.get('model_id')} (dim {emb.get('dim')}), qdrant {where}"
        )
    else:
        print("  embedder none (BM25 only)")
    rate = m.get("bm25_passages_per_s")
    print(
        f"  built in {m.get('build_seconds', 0):.1f}s" + (f" (BM25 {rate:,.0f} passages/s)" if rate else "")
    )
    if m.get("change"):
        print(f"  change {json.dumps(m['change'], ensure_ascii=False)}")


def _progress_enabled(args: argparse.Namespace) -> bool:
    return not args.quiet and sys.stderr.isatty()


# -------------------------------------------------------------------------------------------- commands
def cmd_build(args: argparse.Namespace) -> int:
    from indexing.build import PrecomputedVectors, build_generation

    passages, report = _ingest(args)
    embedder = None if args.embedder in ("none", "auto") else load_embedder(args.embedder)
    pre = PrecomputedVectors.load(args.precomputed) if args.precomputed else None
    manifest = build_generation(
        args.index,
        passages,
        embedder,
        args.home,
        progress=_progress_enabled(args),
        resume=not args.no_resume,
        precomputed=pre,
        batch_size=args.batch_size,
        words=args.words,
        keep=args.keep,
        lock_timeout=args.wait,
        extra=_ingest_extra(report),
        embedder_name=None if embedder is None else args.embedder,
    )
    _record_origins(args, passages)
    _print_manifest(manifest)
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from indexing.build import add_passages, current_manifest, current_passages

    manifest = current_manifest(args.index, args.home)
    existing: list[str] = []
    if not args.replace:
        for p in current_passages(args.index, args.home):
            existing += [p.id, p.doc_id]
    passages, report = _ingest(args, existing_ids=existing)
    embedder = _embedder_for_change(args, manifest)
    out = add_passages(
        args.index,
        passages,
        embedder,
        args.home,
        replace=args.replace,
        progress=_progress_enabled(args),
        lock_timeout=args.wait,
        extra=_ingest_extra(report),
    )
    _record_origins(args, passages)
    _print_manifest(out)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from indexing.build import current_manifest, delete_passages

    ids = list(args.ids)
    if args.ids_file:
        ids += [
            ln.strip() for ln in Path(args.ids_file).read_text(encoding="utf-8").splitlines() if ln.strip()
        ]
    if not ids:
        raise CliError("give ids to delete (arguments or --ids-file)")
    manifest = current_manifest(args.index, args.home)
    embedder = _embedder_for_change(args, manifest)
    try:
        out = delete_passages(
            args.index,
            ids,
            embedder,
            args.home,
            missing_ok=args.missing_ok,
            progress=_progress_enabled(args),
            lock_timeout=args.wait,
        )
    except KeyError as err:
        raise CliError(f"{err.args[0]} (use --missing-ok to ignore unknown ids)") from None
    _print_manifest(out)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    index_dir = settings.index_dir(args.index, args.home)
    gen = gens.current(index_dir)
    if gen is None:
        raise CliError(f"index {args.index!r} has no current generation in {index_dir}")
    manifest = gens.read_manifest(index_dir, gen) or {}
    if args.json:
        print(json.dumps({k: v for k, v in manifest.items() if k != "ingest"}, ensure_ascii=False, indent=2))
    else:
        _print_manifest(manifest)
        infos = gens.list_generations(index_dir)
        print(
            f"  {len(infos)} generation(s) on disk, {sum(i.status == 'incomplete' for i in infos)} incomplete"
        )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    infos = gens.list_generations(settings.index_dir(args.index, args.home))
    if args.json:
        print(json.dumps([i.to_dict() for i in infos], indent=2))
        return 0
    if not infos:
        print(f"index {args.index!r} has no generations")
        return 0
    print(f"{'':2}{'generation':28}{'status':12}{'created':22}{'passages':>10}{'vectors':>10}")
    for i in infos:
        d = i.to_dict()
        print(
            f"{'*' if i.is_current else '':2}{i.name:28}{i.status:12}{d['created']:22}"
            f"{i.counts.get('passages', 0):>10,}{i.counts.get('vectors', 0):>10,}"
        )
    return 0


def cmd_switch(args: argparse.Namespace) -> int:
    index_dir = settings.index_dir(args.index, args.home)
    if args.rollback:
        gen = gens.rollback(index_dir, lock_timeout=args.wait)
        print(f"rolled back {args.index} to {gen}")
    elif args.generation:
        prev = gens.switch(index_dir, args.generation, lock_timeout=args.wait)
        print(f"switched {args.index}: {prev} -> {args.generation}")
    else:
        raise CliError("give a generation name or --rollback")
    return 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    from indexing.build import cleanup

    deleted = cleanup(args.index, args.home, keep=args.keep)
    print(f"deleted {len(deleted)} generation(s)" + (": " + ", ".join(deleted) if deleted else ""))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from indexing.build import open_generation

    with open_generation(args.index, args.home, vectors=False) as snap:
        hits = snap.bm25.search(args.query, args.k, field=args.field)
        passages = {p.id: p for p in snap.bm25.get([h[0] for h in hits])}
    for rank, (pid, score) in enumerate(hits, 1):
        p = passages[pid]
        print(f"{rank:>3}. {score:8.3f}  {pid}  {p.title}\n       {p.text[:160]}")
    if not hits:
        print("no results")
    return 0


# ---------------------------------------------------------------------------------------------- parser
def _add_ingest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs", nargs="+", help="files or folders: .jsonl/.json/.ndjson, .csv/.tsv (.gz ok), .zip, folder"
    )
    p.add_argument(
        "--format", choices=FORMATS, default=None, help="force the input format (default: by extension)"
    )
    p.add_argument(
        "--id-field", default=None, help="id field/column (default: first of _id, id, doc_id, docid)"
    )
    p.add_argument("--title-field", default=None, help="title field/column (default: title, optional)")
    p.add_argument("--text-field", default=None, help="text field/column (default: text)")
    p.add_argument("--auto-id", action="store_true", help="records without an id get <file-stem>:<line>")
    p.add_argument(
        "--max-words", type=int, default=DEFAULT_MAX_WORDS, help="passage size in words (0 = no split)"
    )
    p.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="words repeated between passages")
    p.add_argument(
        "--strict", action="store_true", help="stop at the first bad record instead of skipping it"
    )
    p.add_argument("--show-problems", type=int, default=20, help="problems listed in the summary")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser for ``python -m indexing``."""
    parser = argparse.ArgumentParser(
        prog="python -m indexing", description="Build and manage ViRanker indexes."
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--index", required=True, help="index name (letters, digits, . _ -)")
    common.add_argument("--home", default=None, help="ViRanker home (default: $VIRANKER_HOME or ./var)")
    common.add_argument("--wait", type=float, default=0.0, help="seconds to wait for another builder's lock")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("build", parents=[common], help="build a new generation from input files")
    _add_ingest_args(p)
    p.add_argument("--embedder", default="none", help="e5-small, bge-m3, ... or none (BM25 only; default)")
    p.add_argument("--precomputed", default=None, help="precomputed-vectors metadata JSON to seed the cache")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--words", action="store_true", help="also index underthesea words (BM25 variant)")
    p.add_argument("--keep", type=int, default=5, help="complete generations to keep (older ones are pruned)")
    p.add_argument("--no-resume", action="store_true", help="do not resume an interrupted build")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("add", parents=[common], help="add passages (copy-on-write new generation)")
    _add_ingest_args(p)
    p.add_argument("--embedder", default="auto", help="auto (the index's embedder), none, or a name")
    p.add_argument("--replace", action="store_true", help="overwrite passages whose ids already exist")
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("delete", parents=[common], help="delete passages or documents by id")
    p.add_argument("ids", nargs="*", help="passage ids or document ids")
    p.add_argument("--ids-file", default=None, help="file with one id per line")
    p.add_argument("--missing-ok", action="store_true", help="ignore ids that are not in the index")
    p.add_argument("--embedder", default="auto", help="auto (the index's embedder), none, or a name")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("stats", parents=[common], help="show the current generation")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("list", parents=[common], help="list generations")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("switch", parents=[common], help="serve another generation (rollback)")
    p.add_argument("generation", nargs="?", default=None)
    p.add_argument("--rollback", action="store_true", help="switch to the previous complete generation")
    p.set_defaults(func=cmd_switch)

    p = sub.add_parser("cleanup", parents=[common], help="remove incomplete (and old) generations")
    p.add_argument("--keep", type=int, default=None, help="also keep only the newest N complete generations")
    p.set_defaults(func=cmd_cleanup)

    p = sub.add_parser("search", parents=[common], help="BM25 search in the current generation")
    p.add_argument("query")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--field", choices=("both", "exact", "folded", "words"), default="both")
    p.set_defaults(func=cmd_search)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI → exit status."""
    from indexing.build import BuildError
    from indexing.vectors import VectorStoreUnavailable

    args = build_parser().parse_args(argv)
    try:
        settings.validate_index_name(args.index)
        return int(args.func(args))
    except (
        CliError,
        EmbedderMismatch,
        IngestError,
        BuildError,
        gens.GenerationError,
        VectorStoreUnavailable,
        ValueError,
    ) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; CURRENT is unchanged (rerun to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
