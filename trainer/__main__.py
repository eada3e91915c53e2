"""``python -m trainer {mine,candidates,fit,export}`` — the training command line.

- ``mine``: ICT triplets from a paragraph pool + BEIR train qrels → hard negatives → FlagEmbedding JSONL.
- ``candidates``: a dev BEIR set → first-stage top-k candidates JSONL (cheap validation during ``fit``).
- ``fit``: Lightning training from a YAML config (``--config``) with ``section.key=value`` overrides.
- ``export``: a Lightning checkpoint → a ``from_pretrained`` directory with a model card.
"""

from __future__ import annotations

import argparse
import sys

from trainer.cli_export import _add_export, _cmd_export
from trainer.cli_fit import _add_fit, _cmd_fit, load_config
from trainer.cli_mine import _add_candidates, _add_mine, _cmd_candidates, _cmd_mine

__all__ = ["main", "load_config"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    _add_mine(sub)
    _add_candidates(sub)
    _add_fit(sub)
    _add_export(sub)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return {"mine": _cmd_mine, "candidates": _cmd_candidates, "fit": _cmd_fit, "export": _cmd_export}[
        args.cmd
    ](args)


if __name__ == "__main__":
    sys.exit(main())
