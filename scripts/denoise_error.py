"""How well model folders denoise held-out scenes at each noise level, as a Markdown table.

    python scripts/denoise_error.py mrflow/weights/tiny OTHER_MODEL --size 64

Renders ``--count`` scenes from ``--seed`` (apart from the training seed 7), noises them with one
draw of noise per scene, and prints ``mean ‖x̂0 − x0‖²`` per σ for each model, with the error of
returning the noisy input as the first row. A model worse than the input at small σ loses detail
the refine stage hands it; at large σ the table shows how much layout it recovers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mrflow.images import unit_to_vae
from mrflow.pipelines.tiny import TinyBackbone
from mrflow.scenes import render_scenes, sample_scenes
from mrflow.tiny.models import fold
from mrflow.tiny.training import denoising_error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+", help="model folders (model_index.json + unet/)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--count", type=int, default=16, help="scenes")
    parser.add_argument("--seed", type=int, default=1000, help="scene and noise seed")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.02, 0.05, 0.1, 0.2, 0.4, 0.7, 0.9])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scenes = sample_scenes(args.seed, args.count)
    images = unit_to_vae(render_scenes(scenes, args.size))  # the model's pixel range, [-1, 1]
    rows: list[tuple[str, list[float]]] = []
    for folder in args.models:
        backbone = TinyBackbone.from_pretrained(folder, device="cpu")
        text = backbone.encode_prompt([s.caption for s in scenes], None, 1, 1.0).cond
        errors = denoising_error(
            backbone.unet,
            fold(images, backbone.fold),
            text,
            args.sigmas,
            torch.Generator().manual_seed(args.seed),
            backbone.prediction,
            backbone.skip_std,
        )
        if not rows:
            rows.append(("noisy input", [given for _, given in errors]))
        rows.append((str(folder), [error for error, _ in errors]))
    print(f"mean ‖x̂0 − x0‖² on {args.count} scenes at {args.size}² (seed {args.seed})\n")
    print("| model | " + " | ".join(f"σ = {s:g}" for s in args.sigmas) + " |")
    print("|---|" + "---|" * len(args.sigmas))
    for name, values in rows:
        print(f"| {name} | " + " | ".join(f"{v:.5f}" for v in values) + " |")


if __name__ == "__main__":
    main()
