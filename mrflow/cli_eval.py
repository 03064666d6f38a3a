"""``mrflow eval``: prompt adherence of native sampling vs staged presets, scored by the scene detector."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mrflow.cli_args import add_model_arguments, nonnegative_float, positive_int

REPORT_FILES = ("report.json", "report.md", "grid.png")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="prompt-adherence benchmark of the embedded model (native vs presets)",
        description="Generate a fixed held-out prompt set from the scene grammar with every preset, score each "
        "attribute (colour, shape, size, count, position, relation) with the deterministic scene detector, and "
        "time every preset side by side. Writes report.json, report.md and grid.png to --out.",
    )
    add_model_arguments(p)
    p.add_argument("--oracle", action="store_true", help="score rendered ground truth instead of a model (self-test)")
    p.add_argument(
        "--presets", nargs="+", default=["native", "12plus1", "12plus1-x4"], help="the first one is the speed baseline"
    )
    p.add_argument("--prompts", type=positive_int, default=None, help="number of held-out prompts (default 150)")
    p.add_argument("--prompt-seed", type=int, default=None, help="seed of the prompt set (default: the fixed one)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="image seeds, one run of every prompt each")
    p.add_argument("--size", type=positive_int, default=256, help="target side in pixels (default 256)")
    p.add_argument("--batch-size", type=positive_int, default=1, help="prompts per pipeline call (default 1)")
    p.add_argument("--guidance", type=nonnegative_float, default=None, help="guidance scale (default: the backbone's)")
    p.add_argument("--grid-rows", type=positive_int, default=8, help="prompts shown in grid.png (default 8)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, required=True, help="folder for report.json, report.md and grid.png")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mrflow.config import known_preset_names

    unknown = [p for p in args.presets if p not in known_preset_names()]
    existing = [args.out / name for name in REPORT_FILES if (args.out / name).exists()]
    if unknown:
        print(f"mrflow eval: error: argument --presets: unknown preset {unknown[0]!r}", file=sys.stderr)
        return 2
    if existing and not args.overwrite:
        print(f"mrflow eval: error: {existing[0]} exists (pass --overwrite to replace it)", file=sys.stderr)
        return 2
    import torch

    from mrflow.eval import BENCHMARK_SEED, DEFAULT_PROMPT_COUNT, benchmark_prompts, run_benchmark

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.oracle:
        from mrflow.scenes.oracle import OraclePipeline

        pipeline = OraclePipeline()
    else:
        from mrflow.cli_args import load_pipeline

        pipeline = load_pipeline(args)[0]
        pipeline.set_progress_bar_config(disable=True)
    from tqdm.auto import tqdm

    prompts = benchmark_prompts(args.prompts or DEFAULT_PROMPT_COUNT, args.prompt_seed or BENCHMARK_SEED)
    with tqdm(total=len(prompts) * len(args.seeds), desc="eval", unit="prompt", disable=args.quiet) as bar:
        report = run_benchmark(
            pipeline,
            prompts,
            presets=args.presets,
            seeds=args.seeds,
            out_dir=args.out,
            height=args.size,
            width=args.size,
            batch_size=args.batch_size,
            grid_rows=args.grid_rows,
            guidance_scale=args.guidance,
            progress=bar.update,
        )
    summary = {
        name: {"overall": entry["accuracy"]["overall"], "speedup": entry["speedup"]}
        for name, entry in report["presets"].items()
    }
    print(json.dumps(summary, indent=1))
    print(f"report: {', '.join(str(args.out / name) for name in REPORT_FILES)}")
    return 0
