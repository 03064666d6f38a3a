"""Sample a few held-out prompts with a model folder and save a labelled PNG grid (one row per prompt).

    python scripts/sample_grid.py --model mrflow/weights/tiny --out /tmp/grid.png
    python scripts/sample_grid.py --presets native 12plus1 --low-res-scale 0.25

Columns: one per preset (native, staged presets); the prompt is written above each row.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from mrflow import MrFlowPipeline
from mrflow.scenes import sample_scenes

PROMPTS = [
    "a red circle to the left of a blue square",
    "a green triangle",
    "two yellow stars",
    "a small purple ring on the right",
    "a large orange square above a cyan circle",
    "three pink circles",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--out", type=Path, default=Path("grid.png"))
    parser.add_argument("--presets", nargs="+", default=["native", "12plus1"])
    parser.add_argument("--low-res-scale", type=float, default=None)
    parser.add_argument("--refine-sigma", type=float, default=None)
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--steps", type=int, default=None, help="native steps")
    parser.add_argument("--held-out", type=int, default=0, help="add N scene captions from seed 123")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prompts = PROMPTS + [scene.caption for scene in sample_scenes(123, args.held_out)]
    pipe = MrFlowPipeline.from_pretrained(args.model, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    columns = []
    for preset in args.presets:
        staged = preset != "native"
        options = {
            "low_res_scale": args.low_res_scale if staged else None,
            "refine_sigma": args.refine_sigma if staged else None,
            "num_inference_steps": None if staged else args.steps,
        }
        start = time.time()
        out = pipe(prompts, preset=preset, seed=args.seed, guidance_scale=args.guidance, output_type="np", **options)
        print(f"{preset}: {(time.time() - start) / len(prompts):.2f} s/image, stages {out.stage_seconds}")
        columns.append(out.images)
    size, label = columns[0].shape[1], 14
    grid = Image.new("RGB", (size * len(columns), (size + label) * len(prompts)), "white")
    draw = ImageDraw.Draw(grid)
    for row, prompt in enumerate(prompts):
        top = row * (size + label)
        draw.text((2, top + 1), prompt, fill="black")
        for col, images in enumerate(columns):
            grid.paste(Image.fromarray((images[row] * 255).round().astype(np.uint8)), (col * size, top + label))
    grid.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
