"""Backbone adapters, one module per model family, chosen by ``model_index.json``."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from mrflow.backbone import Backbone

# diffusers pipeline class name → "module:adapter class" (imported only when used).
ADAPTERS: dict[str, str] = {
    "FluxPipeline": "mrflow.pipelines.flux:FluxBackbone",
    "StableDiffusion3Pipeline": "mrflow.pipelines.sd3:SD3Backbone",
    "QwenImagePipeline": "mrflow.pipelines.qwenimage:QwenImageBackbone",
    "ZImagePipeline": "mrflow.pipelines.zimage:ZImageBackbone",
    "Flux2KleinPipeline": "mrflow.pipelines.flux2:Flux2KleinBackbone",
    "MrFlowTinyPipeline": "mrflow.pipelines.tiny:TinyBackbone",
}


def adapter_for(class_name: str) -> type:
    """The adapter class for a diffusers pipeline class name."""
    if class_name not in ADAPTERS:
        raise ValueError(f"unsupported pipeline class {class_name!r}; supported: {sorted(ADAPTERS)}")
    module_name, _, attr = ADAPTERS[class_name].partition(":")
    return getattr(importlib.import_module(module_name), attr)


def load_backbone(
    source: str | Path,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    **kwargs: Any,
) -> Backbone:
    """Load a hub id or a local diffusers folder with the adapter its ``model_index.json`` names."""
    from diffusers import DiffusionPipeline

    path = Path(source)
    if path.exists() and not (path / "model_index.json").is_file():
        raise ValueError(f"{source}: not a diffusers pipeline folder (no model_index.json)")
    index = DiffusionPipeline.load_config(str(source))
    class_name = index.get("_class_name", "")
    return adapter_for(class_name).from_pretrained(source, device=device, dtype=dtype, **kwargs)
