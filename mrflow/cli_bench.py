"""``mrflow bench``: per-stage latency of presets against native sampling, with a report and chart."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mrflow.cli_args import add_model_arguments, positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="measure per-stage latency of presets vs native sampling",
        description="Warm up, then run every preset in turn for --repeats rounds (interleaved, so noise hits all "
        "alike). Reports median and range per stage, model evaluations, peak memory and speedup over native "
        "measured in the same run, as bench.json, bench.md and bench.png in --out.",
    )
    add_model_arguments(p)
    p.add_argument(
        "--random-weights",
        metavar="CONFIG",
        help="build a real-size architecture with random weights instead of loading one: a shipped "
        "name (flux1-dev, flux1-schnell, sd3.5-medium) or a JSON file; latency only",
    )
    p.add_argument("--presets", default="native,12plus1,20plus1", help="comma-separated presets (default %(default)s)")
    p.add_argument("--height", type=positive_int, help="target height (default: the backbone's)")
    p.add_argument("--width", type=positive_int, help="target width (default: the backbone's)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per preset first (default 1)")
    p.add_argument("--repeats", type=positive_int, default=3, help="timed rounds (default 3)")
    p.add_argument("--batch-size", type=positive_int, default=1, help="images per call (default 1)")
    p.add_argument("--prompt", default="a red circle to the left of a blue square", help="the prompt used")
    p.add_argument("--out", type=Path, default=Path("bench"), help="report directory (default ./bench)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report")
    p.add_argument("--quiet", action="store_true", help="no progress bars; print only the report path")
    p.set_defaults(func=run)


def _error(message: str) -> int:
    print(f"mrflow bench: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from mrflow.bench import BenchSettings
    from mrflow.config import known_preset_names

    try:
        presets = tuple(p.strip() for p in args.presets.split(",") if p.strip())
        unknown = [p for p in presets if p not in known_preset_names()]
        if unknown:
            raise ValueError(f"argument --presets: unknown preset {unknown[0]!r}; known: {known_preset_names()}")
        settings = BenchSettings(
            presets, args.height, args.width, args.warmup, args.repeats, args.batch_size, args.prompt
        )
        if args.random_weights and args.backbone:
            raise ValueError("--random-weights and --backbone exclude each other")
        if args.random_weights:
            from mrflow.random_weights import load_config

            load_config(args.random_weights)
        if not args.overwrite and any((args.out / f"bench.{k}").exists() for k in ("json", "md", "png")):
            raise ValueError(f"a report exists in {args.out} (pass --overwrite to replace it)")
    except ValueError as exc:
        return _error(str(exc))
    pipe = _pipeline(args)
    if args.quiet:
        pipe.set_progress_bar_config(disable=True)
    from mrflow.bench import markdown, run_bench, write_report

    try:
        report = run_bench(pipe, settings)
    except ValueError as exc:  # the pipeline's validation for this backbone (sizes, ...)
        return _error(str(exc))
    paths = write_report(report, args.out, overwrite=args.overwrite)
    print(paths["md"] if args.quiet else markdown(report) + f"\nwritten: {', '.join(map(str, paths.values()))}")
    return 0


def _pipeline(args: argparse.Namespace):  # noqa: ANN202 (heavy imports stay inside)
    from mrflow.cli_args import load_pipeline

    if not args.random_weights:
        return load_pipeline(args)[0]
    import torch

    from mrflow import MrFlowPipeline
    from mrflow.pipelines.common import resolve_device
    from mrflow.random_weights import build_random_pipeline

    dtype = None if args.dtype in (None, "auto") else getattr(torch, args.dtype)
    backbone = build_random_pipeline(args.random_weights, resolve_device(args.device), dtype)
    return MrFlowPipeline(backbone, args.upscaler)
