"""Render the training scenes once into a uint8 cache and encode their captions with MiniLM.

python scripts/prepare_data.py --count 8000 --seed 7 [--out ~/.cache/mrflow/train/data]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from tqdm import tqdm

from mrflow.tiny.data import default_train_dir, encode_caption_cache, render_cache
from mrflow.tiny.models import TextConfig
from mrflow.tiny.text import MiniLMEncoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=default_train_dir() / "data")
    parser.add_argument("--seed", type=int, default=7, help="scene seed (keep it apart from evaluation seeds)")
    parser.add_argument("--count", type=int, default=12000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    with tqdm(total=args.count, desc="render") as bar:
        render_cache(args.out, args.seed, args.count, tuple(args.sizes), progress=bar.update)
    print(f"rendered {args.count} scenes at {args.sizes} in {time.time() - start:.0f} s")
    encode_caption_cache(args.out, MiniLMEncoder(TextConfig()))
    print(f"done in {time.time() - start:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
