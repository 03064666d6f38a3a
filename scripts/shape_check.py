"""Does a model draw the shape its caption names? A sampling check on one attribute.

    python scripts/shape_check.py mrflow/weights/tiny --size 64 --grid shapes.png

Generates "a large <colour> <shape>" for every shape and ``--colours`` colours, natively at
``--size``, with image seed = the colour's index, so each seed is drawn once per shape word. Prints
how often the scene detector reads the requested shape on the largest object (chance is 1 in 6)
and its confusion counts; ``--grid`` writes the images, one row per shape word and one column per
seed, where a model that ignores the shape word shows the same picture down each column.
``--oracle`` scores ground-truth renders instead (all right: the detector is not the limit).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mrflow import MrFlowPipeline
from mrflow.images import to_uint8
from mrflow.scenes.detect import detect
from mrflow.scenes.oracle import OraclePipeline
from mrflow.scenes.vocab import COLOURS, SHAPES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, nargs="?", help="model folder (model_index.json + unet/)")
    parser.add_argument("--oracle", action="store_true", help="score ground-truth renders instead (self-test)")
    parser.add_argument("--size", type=int, default=64, help="native sampling size (default 64)")
    parser.add_argument("--colours", type=int, default=len(COLOURS), help="colours (= seeds) per shape")
    parser.add_argument("--grid", type=Path, default=None, help="write a PNG: one row per shape, one column per seed")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not 2 <= args.colours <= len(COLOURS):
        parser.error(f"--colours must be in 2..{len(COLOURS)}, got {args.colours}")
    if (args.model is None) == (not args.oracle):
        parser.error("give a model folder or --oracle (not both)")
    if args.grid is not None and args.grid.exists():
        parser.error(f"--grid: {args.grid} exists")
    torch.set_num_threads(args.threads)
    if args.oracle:
        pipe = OraclePipeline()
    else:
        pipe = MrFlowPipeline.from_pretrained(args.model)
        pipe.set_progress_bar_config(disable=True)
    colours = list(COLOURS)[: args.colours]
    seeds = list(range(len(colours)))
    images: dict[str, np.ndarray] = {}
    confusion: Counter[tuple[str, str]] = Counter()
    for shape in SHAPES:
        prompts = [f"a large {colour} {shape}" for colour in colours]
        out = pipe(prompts, height=args.size, width=args.size, preset="native", seed=seeds, output_type="pt")
        images[shape] = to_uint8(out.images)
        for image in images[shape]:
            found = detect(image)
            confusion[(shape, found[0].shape if found else "none")] += 1
    right = sum(n for (wanted, got), n in confusion.items() if wanted == got)
    total = len(SHAPES) * len(seeds)
    name = args.model or "oracle"
    print(f"{name}: shape right {right}/{total} ({100 * right / total:.1f}%; chance {100 / len(SHAPES):.1f}%)")
    print("| asked | " + " | ".join(SHAPES) + " | none |")
    print("|---|" + "---|" * (len(SHAPES) + 1))
    for wanted in SHAPES:
        print(f"| {wanted} | " + " | ".join(str(confusion[(wanted, got)]) for got in (*SHAPES, "none")) + " |")
    if args.grid is not None:
        rows = [np.concatenate(list(images[shape]), axis=1) for shape in SHAPES]
        Image.fromarray(np.concatenate(rows, axis=0)).save(args.grid)


if __name__ == "__main__":
    main()
