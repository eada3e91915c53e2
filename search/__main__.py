"""Command line search: ``python -m search query --index NAME [--pipeline hybrid] [-k 10] "câu hỏi"``.

Prints one line per hit (rank, score, passage id, title) and a snippet, plus what was searched (after
diacritic restoration) and the per-stage timings. ``--json`` prints the whole :class:`SearchResult` instead.
Exit codes: 0 ok, 1 no results, 2 bad input or unavailable index/model.
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


def cmd_query(args: argparse.Namespace) -> int:
    from indexing.embedders import EmbedderMismatch, EmbedderUnavailable
    from indexing.generations import GenerationError
    from indexing.vectors import VectorStoreUnavailable
    from reranker.backends import ModelUnavailable
    from search.errors import SearchError
    from search.service import SearchService

    query = " ".join(args.query)
    try:
        with SearchService(args.index, root=args.root) as svc:
            res = svc.search(query, args.pipeline, args.k, as_typed=args.as_typed)
    except (SearchError, ValueError, ModelUnavailable, EmbedderUnavailable, EmbedderMismatch, GenerationError,
            VectorStoreUnavailable) as err:  # bad input or an unavailable index / model: say why, no traceback
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
