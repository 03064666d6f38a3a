"""The ``mrflow`` command line: one subcommand per job, each in its own module."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from mrflow import __version__

# Each subcommand module exposes ``add_parser(subparsers) -> None`` which registers its parser and
# sets ``func`` (a callable taking the parsed namespace and returning an exit code) as a default.
SubcommandAdder = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _subcommands() -> list[SubcommandAdder]:
    from mrflow import cli_bench, cli_eval, cli_generate, cli_upscale

    adders: list[SubcommandAdder] = [
        cli_generate.add_parser,
        cli_bench.add_parser,
        cli_eval.add_parser,
        cli_upscale.add_parser,
    ]
    return adders


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mrflow",
        description="Fast text-to-image generation by staged sampling (low-res flow → GAN upscale → refine).",
    )
    parser.add_argument("--version", action="version", version=f"mrflow {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _subcommands():
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
