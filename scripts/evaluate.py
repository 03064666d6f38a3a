"""Prompt-adherence benchmark: native sampling vs staged presets, scored by the scene detector.

Usage:
    python scripts/evaluate.py --out reports/benchmark                  # the embedded default model
    python scripts/evaluate.py --model path/to/diffusers_folder --presets native 12plus1 20plus1
    python scripts/evaluate.py --oracle --out /tmp/oracle               # self-test: expect ~100 %
"""

from __future__ import annotations

import argparse
import json
import logging

import torch

from mrflow.eval import BENCHMARK_SEED, DEFAULT_PROMPT_COUNT, TextToImage, benchmark_prompts, run_benchmark


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="diffusers folder or hub id; default: the embedded model")
    parser.add_argument("--upscaler", default=None, help="upscaler name or weights file (default: the model's)")
    parser.add_argument("--oracle", action="store_true", help="score rendered ground truth instead of a model")
    parser.add_argument("--presets", nargs="+", default=["native", "12plus1"], help="first one is the baseline")
    parser.add_argument("--prompts", type=int, default=DEFAULT_PROMPT_COUNT, help="number of held-out prompts")
    parser.add_argument("--prompt-seed", type=int, default=BENCHMARK_SEED, help="seed of the prompt set")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="image seeds (one run each)")
    parser.add_argument("--size", type=int, default=256, help="target side in pixels")
    parser.add_argument("--batch-size", type=int, default=1, help="prompts per pipeline call")
    parser.add_argument("--grid-rows", type=int, default=8, help="prompts shown in grid.png")
    parser.add_argument("--device", default=None, help="e.g. cpu or cuda (default: the pipeline's choice)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", required=True, help="folder for report.json, report.md and grid.png")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    pipeline: TextToImage
    if args.oracle:
        from mrflow.scenes.oracle import OraclePipeline

        pipeline = OraclePipeline()
    else:
        from mrflow import MrFlowPipeline

        model = MrFlowPipeline.from_pretrained(args.model, upscaler=args.upscaler, device=args.device)
        model.set_progress_bar_config(disable=True)
        pipeline = model
    report = run_benchmark(
        pipeline,
        benchmark_prompts(args.prompts, args.prompt_seed),
        presets=args.presets,
        seeds=args.seeds,
        out_dir=args.out,
        height=args.size,
        width=args.size,
        batch_size=args.batch_size,
        grid_rows=args.grid_rows,
    )
    summary = {
        name: {"overall": entry["accuracy"]["overall"], "speedup": entry["speedup"]}
        for name, entry in report["presets"].items()
    }
    print(json.dumps(summary, indent=1))
    print(f"report: {args.out}/report.md, {args.out}/report.json, {args.out}/grid.png")


if __name__ == "__main__":
    main()
