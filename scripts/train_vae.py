"""Train the embedded model's autoencoder on random crops of the cached scenes, then encode the cache.

    python scripts/prepare_data.py                # once: renders + caption embeddings
    python scripts/train_vae.py --steps 500       # ~10 min on 2 cores; add --resume to continue

Writes checkpoints and ``train.log`` to ``--out`` (default ``~/.cache/mrflow/train/vae``), the final
autoencoder (diffusers folder, latent normalisation set from the data) to ``<out>/final``, and the
normalised latents of every cached image to the data folder for the flow training.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from mrflow.pipelines.common import encode_scaled
from tqdm import tqdm

from mrflow.tiny.data import (
    default_train_dir,
    load_checkpoint,
    load_images,
    save_checkpoint,
    save_latents,
    to_unit_batch,
)
from mrflow.tiny.models import VAEConfig, build_vae
from mrflow.tiny.training import VAELossWeights, latent_statistics, vae_loss

SIZE_WEIGHTS = {64: 0.25, 128: 0.25, 256: 0.5}  # crops from every size the model will see


def crop_batch(
    images: dict[int, np.ndarray], batch: int, crop: int, generator: torch.Generator
) -> torch.Tensor:
    """``batch`` random ``crop``² patches in [-1, 1], each from a random image at a random size."""
    sizes = list(SIZE_WEIGHTS)
    weights = torch.tensor([SIZE_WEIGHTS[s] for s in sizes])
    picks = torch.multinomial(weights, batch, replacement=True, generator=generator).tolist()
    patches = []
    for pick in picks:
        array = images[sizes[pick]]
        index = int(torch.randint(len(array), (1,), generator=generator))
        span = array.shape[1] - crop
        top, left = (torch.randint(span + 1, (2,), generator=generator).tolist()) if span else (0, 0)
        patches.append(array[index, top : top + crop, left : left + crop])
    return to_unit_batch(np.stack(patches))


@torch.no_grad()
def encode_cache(
    vae: torch.nn.Module, data: Path, sizes: list[int], counts: list[int], batch: int, log: logging.Logger
) -> None:
    """Set the latent normalisation from the largest size's latents, then save normalised latents.

    Only the first ``counts[i]`` images of size ``sizes[i]`` are encoded (encoding 256² is the slow part).
    """
    raw: dict[int, torch.Tensor] = {}
    vae.register_to_config(scaling_factor=1.0, shift_factor=0.0)
    for size, count in zip(sizes, counts, strict=True):
        array = load_images(data, size)[:count]
        chunks = []
        for i in tqdm(range(0, len(array), batch), desc=f"encode {size}"):
            chunks.append(encode_scaled(vae, to_unit_batch(array[i : i + batch])))
        raw[size] = torch.cat(chunks)
    shift, scale = latent_statistics(raw[max(sizes)])
    vae.register_to_config(shift_factor=shift, scaling_factor=scale)
    log.info("latent normalisation: shift_factor %.5f scaling_factor %.5f", shift, scale)
    for size, latents in raw.items():
        normalised = (latents - shift) * scale
        log.info(
            "latents %d: %s mean %.4f std %.4f",
            size,
            tuple(normalised.shape),
            normalised.mean(),
            normalised.std(),
        )
        save_latents(data, size, normalised)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=default_train_dir() / "data")
    parser.add_argument("--out", type=Path, default=default_train_dir() / "vae")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--crop", type=int, default=48)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save-every", type=int, default=100)
    parser.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    parser.add_argument("--encode-sizes", type=int, nargs="*", default=[64, 128, 256])
    parser.add_argument("--encode-counts", type=int, nargs="*", default=[8000, 4000, 2500])
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        handlers=[logging.FileHandler(args.out / "train.log"), logging.StreamHandler()],
    )
    log = logging.getLogger("train_vae")
    torch.manual_seed(args.seed)
    vae = build_vae(VAEConfig())
    optimizer = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(args.seed)
    step = 0
    checkpoint = args.out / "last.pt"
    if args.resume and checkpoint.is_file():
        state = load_checkpoint(checkpoint)
        vae.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        step = int(state["step"])
        log.info("resumed from %s at step %d", checkpoint, step)
    images = {size: load_images(args.data, size) for size in SIZE_WEIGHTS}
    weights = VAELossWeights()
    log.info(
        "vae: %.3f M params; %d steps of %d × %d² crops",
        sum(p.numel() for p in vae.parameters()) / 1e6,
        args.steps,
        args.batch,
        args.crop,
    )
    start, smoothed = time.time(), None
    vae.train()
    with tqdm(total=args.steps, initial=step, desc="vae") as bar:
        while step < args.steps:
            lr = (
                args.lr
                * min(1.0, (step + 1) / 50)
                * (0.1 + 0.45 * (1 + math.cos(math.pi * step / args.steps)))
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = crop_batch(images, args.batch, args.crop, generator)
            loss, parts = vae_loss(vae, batch, weights, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
            optimizer.step()
            step += 1
            smoothed = float(loss) if smoothed is None else 0.95 * smoothed + 0.05 * float(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{smoothed:.4f}")
            if step % 25 == 0:
                log.info(
                    "step %d loss %.4f (smoothed %.4f) %s lr %.2e %.0fs",
                    step,
                    float(loss),
                    smoothed,
                    {k: round(v, 4) for k, v in parts.items()},
                    lr,
                    time.time() - start,
                )
            if step % args.save_every == 0 or step == args.steps:
                state = {
                    "model": vae.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(),
                    "step": step,
                }
                save_checkpoint(checkpoint, state)
    vae.eval()
    encode_cache(vae, args.data, args.encode_sizes, args.encode_counts, batch=16, log=log)
    vae.save_pretrained(args.out / "final", safe_serialization=True)
    log.info("saved %s after %.0f s", args.out / "final", time.time() - start)


if __name__ == "__main__":
    main()
