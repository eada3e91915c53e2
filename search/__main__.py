"""Command line search: ``python -m search query --index NAME [--pipeline hybrid] [-k 10] "câu hỏi"``.

Prints one line per hit (rank, score, passage id, title) and a snippet, plus what was searched (after
diacritic restoration) and the per-stage timings. ``--json`` prints the whole :class:`SearchResult` instead.
Exit codes: 0 ok, 1 no results, 2 bad input or unavailable index/model.

While ``python app.py`` serves the same index, its vector store is held by the app (the embedded Qdrant
engines allow one process per path and have no read-only open). The CLI then sends the query to the running
app's JSON API (``/api/v1/search``; the app records its URL in ``$VIRANKER_HOME/run/app-<index>.json``, see
:mod:`search.app_registry`) and says so on stderr; ``--app never`` turns this off, ``--app always`` skips
the local open. BM25-only pipelines still run locally (Whoosh allows many readers).
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Sequence

__all__ = ["main"]


def _snippet(text: str, width: int) -> str:
    return textwrap.shorten(" ".join(text.split()), width=width, placeholder=" …")


def _print_result(res, width: int) -> None:
    if res.searched_query != res.query:
        print(f"searched: {res.searched_query}   (diacritics: {res.diacritics})")
    for note in res.notes:
        print(f"note: {note}")
    for h in res.hits:
        title = f" — {h.title}" if h.title else ""
        print(f"{h.rank:>3}. {h.score:8.4f}  {h.id}{title}")
        print(f"      {_snippet(h.text, width)}")
    stages = ", ".join(f"{k} {v:.1f}" for k, v in res.timings_ms.items() if k != "total")
    print(f"[{res.pipeline}] {len(res.hits)} hits in {res.timings_ms.get('total', 0):.1f} ms ({stages})")


def _print_app_result(out: dict, width: int) -> None:
    """The running app's ``/api/v1/search`` JSON, printed like :func:`_print_result`."""
    if out.get("searched_query") and out["searched_query"] != out.get("query"):
        print(f"searched: {out['searched_query']}")
    for note in out.get("notes") or []:
        print(f"note: {note}")
    for h in out.get("hits") or []:
        title = f" — {h['title']}" if h.get("title") else ""
        print(f"{h['rank']:>3}. {float(h['score']):8.4f}  {h['id']}{title}")
        print(f"      {_snippet(h.get('text') or '', width)}")
    timings = out.get("timings_ms") or {}
    stages = ", ".join(f"{k} {v:.1f}" for k, v in timings.items() if k != "total")
    print(f"[{out.get('pipeline')}] {len(out.get('hits') or [])} hits in {timings.get('total', 0):.1f} ms ({stages})")


def _via_app(args: argparse.Namespace, query: str, why: str) -> int | None:
    """Search through the app registered for the index → exit code, or None when no app is registered."""
    from search.app_registry import AppUnreachable, find_app, search_via_app

    app = find_app(args.index, args.root)
    if app is None:
        return None
    print(f"{why}: searching through the running app at {app.url} (pid {app.pid})", file=sys.stderr)
    if args.as_typed:
        print("note: --as-typed is not passed through the app's API; the app restores diacritics as usual",
              file=sys.stderr)
    try:
        out = search_via_app(app, query, args.pipeline, args.k)
    except AppUnreachable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(out, ensure_ascii=False, indent=1))
    else:
        _print_app_result(out, args.width)
    return 0 if out.get("hits") else 1


def cmd_query(args: argparse.Namespace) -> int:
    from indexing.embedders import EmbedderMismatch, EmbedderUnavailable
    from indexing.generations import GenerationError
    from indexing.vectors import VectorStoreUnavailable
    from reranker.backends import ModelUnavailable
    from search.errors import SearchError, VectorsUnavailable
    from search.service import SearchService

    query = " ".join(args.query)
    if args.app == "always":
        rc = _via_app(args, query, "--app always")
        if rc is None:
            print(f"error: no running app is registered for index {args.index!r}", file=sys.stderr)
            return 2
        return rc
    try:
        with SearchService(args.index, root=args.root) as svc:
            res = svc.search(query, args.pipeline, args.k, as_typed=args.as_typed)
            vector_error = svc.status().get("vector_error")
        if vector_error and args.pipeline is None:  # the default pipeline fell back to BM25 only
            rc = _via_app(args, query, "the index's vector store is in use") if args.app == "auto" else None
            if rc is not None:
                return rc
            print(f"note: vectors unavailable ({vector_error}); searched with {res.pipeline} only", file=sys.stderr)
    except (VectorsUnavailable, VectorStoreUnavailable) as err:  # held by the running app (one process per path)
        rc = _via_app(args, query, "the index's vector store is in use") if args.app == "auto" else None
        if rc is not None:
            return rc
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (SearchError, ValueError, ModelUnavailable, EmbedderUnavailable, EmbedderMismatch, GenerationError,
            ) as err:  # bad input or an unavailable index / model: say why, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(res.to_dict(), ensure_ascii=False, indent=1))
    else:
        _print_result(res, args.width)
    return 0 if res.hits else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m search", description="Search a ViRanker index.")
    sub = p.add_subparsers(dest="command", required=True)
    q = sub.add_parser("query", help="search an index and print the ranked results")
    q.add_argument("query", nargs="+", help="the query (quote it, or give several words)")
    q.add_argument("--index", required=True, help="index name (under $VIRANKER_HOME/indexes)")
    q.add_argument("--root", help="ViRanker home (default $VIRANKER_HOME or ./var)")
    q.add_argument("--pipeline", default=None,
                   help="bm25 | dense | hybrid | <first>+<reranker> (default: hybrid+viranker when available)")
    q.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    q.add_argument("--as-typed", action="store_true", help="no diacritic restoration")
    q.add_argument("--json", action="store_true", help="print the SearchResult as JSON")
    q.add_argument("--width", type=int, default=160, help="snippet width in characters")
    q.add_argument("--app", choices=["auto", "never", "always"], default="auto",
                   help="search through the running app (python app.py) serving this index: auto (when its vector "
                        "store is held by the app; default), never, always")
    q.set_defaults(func=cmd_query)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "k", 1) < 1:
        print("error: -k must be >= 1", file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
