"""Training data of the embedded model: scenes rendered once into a uint8 cache, captions encoded once.

Cache layout in a data folder (outside the repository; see :func:`default_train_dir`)::

    images_64.npy, images_128.npy, images_256.npy   (N, S, S, 3) uint8
    captions.json                                   {"seed": ..., "captions": [...]}
    text.safetensors                                tokens (N, L, 384) fp16, pooled (N, 384) fp16,
                                                    null_tokens (1, L, 384), null_pooled (1, 384)
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from mrflow.tiny.text import MiniLMEncoder, TextEmbeddings

logger = logging.getLogger(__name__)


def default_train_dir() -> Path:
    """``$MRFLOW_CACHE_DIR/train`` if set, else ``~/.cache/mrflow/train``."""
    root = os.environ.get("MRFLOW_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "mrflow") / "train"


def render_cache(
    folder: Path,
    seed: int,
    count: int,
    sizes: tuple[int, ...],
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Render ``sample_scenes(seed, count)`` at each size into ``images_<size>.npy``; write captions.

    Returns:
        The ``count`` captions.
    """
    from mrflow.scenes import render, sample_scenes

    folder.mkdir(parents=True, exist_ok=True)
    scenes = sample_scenes(seed, count)
    arrays = {
        size: np.lib.format.open_memmap(
            folder / f"images_{size}.npy.tmp", mode="w+", dtype=np.uint8, shape=(count, size, size, 3)
        )
        for size in sizes
    }
    for index, scene in enumerate(scenes):
        for size, array in arrays.items():
            array[index] = render(scene, size)
        if progress is not None:
            progress(1)
    for size, array in arrays.items():
        array.flush()
        del array
        os.replace(folder / f"images_{size}.npy.tmp", folder / f"images_{size}.npy")
    captions = [scene.caption for scene in scenes]
    payload = {"seed": seed, "count": count, "captions": captions}
    (folder / "captions.json").write_text(json.dumps(payload), encoding="utf-8")
    return captions


def load_images(folder: Path, size: int) -> np.ndarray:
    """The cached ``(N, size, size, 3)`` uint8 renders, memory-mapped."""
    return np.load(folder / f"images_{size}.npy", mmap_mode="r")


def to_unit_batch(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(B, H, W, 3)`` → float32 ``(B, 3, H, W)`` in [-1, 1] (the model's pixel range)."""
    return torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def load_captions(folder: Path) -> list[str]:
    return json.loads((folder / "captions.json").read_text(encoding="utf-8"))["captions"]


@torch.no_grad()
def encode_caption_cache(folder: Path, encoder: MiniLMEncoder, batch_size: int = 256) -> None:
    """Encode every cached caption and the empty caption once, into ``text.safetensors`` (fp16)."""
    captions = load_captions(folder)
    parts = [encoder(captions[i : i + batch_size]) for i in range(0, len(captions), batch_size)]
    text = TextEmbeddings.cat(parts)
    null = encoder([""])
    tensors = {
        "tokens": text.tokens.half(),
        "pooled": text.pooled.half(),
        "null_tokens": null.tokens.half(),
        "null_pooled": null.pooled.half(),
    }
    save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(folder / "text.safetensors"))


def load_caption_cache(folder: Path) -> tuple[TextEmbeddings, TextEmbeddings]:
    """``(all captions, empty caption)`` embeddings in float32."""
    data = load_file(str(folder / "text.safetensors"))
    text = TextEmbeddings(data["tokens"].float(), data["pooled"].float())
    null = TextEmbeddings(data["null_tokens"].float(), data["null_pooled"].float())
    return text, null


def save_checkpoint(path: Path, state: dict[str, object]) -> None:
    """Write a training checkpoint (tensors and plain containers only) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, object]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors only, no code unpickled)."""
    return torch.load(path, map_location="cpu", weights_only=True)
