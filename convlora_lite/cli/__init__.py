"""The ``convlora`` command line (also ``python -m convlora_lite``).

Each sub-command lives in its own module of this package and exposes ``register(subparsers)``,
which adds its parser and sets ``func(args) -> int`` as the handler. A user mistake raises
:class:`~convlora_lite.errors.UserError`; ``main`` prints its message and exits with status 2
instead of a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from convlora_lite.errors import UserError

#: sub-command modules, in the order ``--help`` lists them.
_COMMANDS = ("params", "train", "eval", "predict", "export", "hub", "data", "bench", "table", "reproduce")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convlora", description="Conv-LoRA for the Segment Anything Model.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = int(args.func(args) or 0)
    except UserError as err:
        print(f"convlora {args.command}: error: {err}", file=sys.stderr)
        return 2
    from convlora_lite.training import (
        end_distributed,  # only after success: a destroy while other ranks still talk can hang
    )

    end_distributed()
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
