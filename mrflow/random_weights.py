"""Real-size architectures with random weights, for latency measurements without downloads.

Latency does not depend on weight values, so a model built from its published configuration and
filled with random numbers times like the real one. Images from it are noise: use it for
``mrflow bench`` only, and say so in reports (the bench report does).
"""

from __future__ import annotations

import json
import logging
import string
from importlib import resources
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

_WORDS = "a an the of on in to left right above below red green blue yellow cat dog photo big small".split()


def clip_tokenizer(max_length: int = 77) -> Any:
    """A CLIP BPE tokenizer over letters and a few words, built in memory (no files)."""
    from transformers import CLIPTokenizer

    letters = list(string.ascii_lowercase)
    vocab: dict[str, int] = {}
    for piece in ["<|startoftext|>", "<|endoftext|>", *letters, *[c + "</w>" for c in letters]]:
        vocab[piece] = len(vocab)
    merges: list[tuple[str, str]] = []
    for word in _WORDS:
        current = word[0]
        for i, ch in enumerate(word[1:], start=1):
            nxt = ch + ("</w>" if i == len(word) - 1 else "")
            merges.append((current, nxt))
            current = current + nxt
            vocab.setdefault(current, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


def t5_tokenizer() -> Any:
    """A SentencePiece-style T5 tokenizer over a few words and letters, built in memory."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("▁" + w, -1.0) for w in _WORDS] + [(c, -5.0) for c in string.ascii_lowercase] + [("▁", -2.0)]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def available_configs() -> list[str]:
    """Names of the shipped architecture configs (``configs/random/*.json``)."""
    folder = resources.files("mrflow.configs").joinpath("random")
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))


def load_config(name_or_path: str | Path) -> dict[str, Any]:
    """A shipped config by name, or a JSON file with the same layout."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        text = path.read_text(encoding="utf-8")
    elif str(name_or_path) in available_configs():
        text = resources.files("mrflow.configs").joinpath("random", f"{name_or_path}.json").read_text("utf-8")
    else:
        raise ValueError(f"unknown architecture config {str(name_or_path)!r}; shipped: {available_configs()}")
    config = json.loads(text)
    if config.get("pipeline") not in ("FluxPipeline", "StableDiffusion3Pipeline"):
        raise ValueError(f"{name_or_path}: 'pipeline' must be FluxPipeline or StableDiffusion3Pipeline")
    return config


def _module(spec: dict[str, Any], device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """One component with random weights, built directly on ``device`` then cast to ``dtype``."""
    import diffusers
    import transformers

    name = spec["_class_name"]
    kwargs = {k: v for k, v in spec.items() if not k.startswith("_")}
    with torch.device(device):
        if hasattr(diffusers, name):
            module = getattr(diffusers, name).from_config(kwargs)
        else:
            model_cls = getattr(transformers, name)
            module = model_cls(model_cls.config_class(**kwargs))
    return module.to(dtype).eval()


def build_random_pipeline(
    name_or_path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype | None = None
) -> Any:
    """A backbone of real size with random weights (bf16 on CUDA, fp32 on CPU by default).

    The VAE is kept in float32 on CPU and bf16 on CUDA like the transformer. Tokenizers are small
    in-memory ones: prompts are padded to the families' usual lengths, so text-encoder cost is real.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, StableDiffusion3Pipeline

    from mrflow.pipelines.common import default_dtype
    from mrflow.pipelines.flux import FluxBackbone
    from mrflow.pipelines.sd3 import SD3Backbone

    config = load_config(name_or_path)
    device = torch.device(device)
    dtype = dtype or default_dtype(device)
    modules = {
        key: _module(spec, device, dtype)
        for key, spec in config.items()
        if isinstance(spec, dict) and key not in ("scheduler",)
    }
    scheduler_spec = {k: v for k, v in config["scheduler"].items() if not k.startswith("_")}
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(scheduler_spec)
    source = f"random:{name_or_path}"
    logger.info("built %s with random weights on %s (%s)", name_or_path, device, dtype)
    if config["pipeline"] == "FluxPipeline":
        pipe = FluxPipeline(scheduler=scheduler, tokenizer=clip_tokenizer(), tokenizer_2=t5_tokenizer(), **modules)
        return FluxBackbone(pipe, source=source)
    pipe = StableDiffusion3Pipeline(
        scheduler=scheduler,
        tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(),
        tokenizer_3=t5_tokenizer(),
        **modules,
    )
    return SD3Backbone(pipe, source=source)


def parameter_counts(name_or_path: str | Path) -> dict[str, int]:
    """Parameters per component, counted on the meta device (no memory is allocated)."""
    config = load_config(name_or_path)
    counts = {}
    for key, spec in config.items():
        if isinstance(spec, dict) and key != "scheduler":
            module = _module(spec, torch.device("meta"), torch.float32)
            counts[key] = sum(p.numel() for p in module.parameters())
    return counts
