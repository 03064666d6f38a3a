"""Sampling configurations and named presets (the presets themselves are data in ``configs/``)."""

from __future__ import annotations

import dataclasses
import functools
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

RefineStart = Literal["sigma", "schedule_node"]
REFINE_STARTS: tuple[str, ...] = ("sigma", "schedule_node")


def _check_steps(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class StagedConfig:
    """Staged sampling: low-res flow sampling → upscale → refine from an explicit noise level.

    Attributes:
        low_res_scale: low-res side / target side; 0.5 means ×2 super-resolution (4× fewer tokens).
        low_res_steps: Euler steps of stage 1, on the backbone's own schedule for the low-res size.
        refine_steps: Euler steps of stage 3, uniform in σ from ``refine_sigma`` to 0.
        refine_sigma: the true noise level injected before refinement (σ = 1 is pure noise); no
            schedule shift is applied to it.
        refine_start: ``"sigma"`` starts the refine exactly at ``refine_sigma``. ``"schedule_node"``
            (for distilled backbones, trained only at their schedule's nodes) starts at the node
            nearest ``refine_sigma`` of the backbone's native ``low_res_steps``-step schedule for the
            *target* size and follows that schedule's remaining nodes to 0, so the tail sets the step
            count and ``refine_steps`` is not used. Either way the output reports the true σ used.
    """

    low_res_scale: float = 0.5
    low_res_steps: int = 12
    refine_steps: int = 1
    refine_sigma: float = 0.12
    refine_start: RefineStart = "sigma"

    def __post_init__(self) -> None:
        if not 0 < self.low_res_scale < 1:
            raise ValueError(f"low_res_scale must be in (0, 1), got {self.low_res_scale!r}")
        _check_steps("low_res_steps", self.low_res_steps)
        _check_steps("refine_steps", self.refine_steps)
        if not 0 < self.refine_sigma < 1:
            raise ValueError(f"refine_sigma must be in (0, 1), got {self.refine_sigma!r}")
        if self.refine_start not in REFINE_STARTS:
            raise ValueError(f"refine_start must be one of {REFINE_STARTS}, got {self.refine_start!r}")
        if self.refine_start == "schedule_node" and self.low_res_steps < 2:
            raise ValueError(
                f"refine_start='schedule_node' needs low_res_steps >= 2 (a schedule with an interior node), "
                f"got {self.low_res_steps}"
            )


@dataclass(frozen=True)
class NativeConfig:
    """Native sampling at the target size: the baseline. ``steps=None`` takes the backbone default."""

    steps: int | None = None

    def __post_init__(self) -> None:
        if self.steps is not None:
            _check_steps("steps", self.steps)


SamplingConfig = StagedConfig | NativeConfig

_MODES: dict[str, type[StagedConfig] | type[NativeConfig]] = {"staged": StagedConfig, "native": NativeConfig}


def config_from_dict(name: str, data: dict[str, Any]) -> SamplingConfig:
    """Build a config from preset data; unknown keys and modes are errors."""
    data = dict(data)
    mode = data.pop("mode", "staged")
    if mode not in _MODES:
        raise ValueError(f"preset {name!r}: mode must be one of {sorted(_MODES)}, got {mode!r}")
    cls = _MODES[mode]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"preset {name!r}: unknown keys {unknown} for mode {mode!r} (known: {sorted(known)})")
    return cls(**data)


def _read_toml(filename: str) -> dict[str, Any]:
    resource = resources.files("mrflow.configs").joinpath(filename)
    if not resource.is_file():
        raise ValueError(f"no configuration file {filename!r} in mrflow.configs")
    return tomllib.loads(resource.read_text(encoding="utf-8"))


@functools.cache
def presets() -> dict[str, SamplingConfig]:
    """The generic named presets shipped in ``configs/presets.toml``."""
    return {name: config_from_dict(name, data) for name, data in _read_toml("presets.toml").items()}


def get_preset(name: str, variant: str | None = None) -> SamplingConfig:
    """A preset by name: the variant's own (``configs/<variant>.toml``) first, then the generic one."""
    table = presets_for(variant) if variant is not None else presets()
    if name not in table:
        where = f" for {variant!r}" if variant is not None else ""
        raise ValueError(f"unknown preset {name!r}{where}; available: {sorted(table)}")
    return table[name]


def default_preset(variant: str) -> str:
    """The preset a backbone variant uses when none is named (``12plus1`` for unknown variants)."""
    return backbone_defaults(variant).default_preset if variant in BACKBONE_VARIANTS else "12plus1"


def known_preset_names() -> list[str]:
    """Every preset name some backbone understands (the generic ones and each variant's own)."""
    return sorted(set(presets()).union(*(presets_for(v) for v in BACKBONE_VARIANTS)))


def presets_for(variant: str) -> dict[str, SamplingConfig]:
    """Generic presets overlaid with a backbone variant's; an unknown variant has only the generic ones."""
    table = dict(presets())
    if variant in BACKBONE_VARIANTS:
        table.update(backbone_defaults(variant).presets)
    return table


# ---------------------------------------------------------------------- per-backbone data
# Backbone variants with a file ``configs/<variant>.toml``; adapters expose their variant name.
BACKBONE_VARIANTS: tuple[str, ...] = (
    "flux-dev",
    "flux-schnell",
    "sd3",
    "qwenimage",
    "zimage",
    "zimage-turbo",
    "flux2-klein",
    "flux2-klein-distilled",
    "tiny",
)


@dataclass(frozen=True)
class SizeEntry:
    """A target size and its low-res size for ``low_res_scale = 0.5``, both ``(height, width)`` pixels."""

    target: tuple[int, int]
    low_res: tuple[int, int]


@dataclass(frozen=True)
class BackboneDefaults:
    """What a released backbone variant uses by default, from ``configs/<variant>.toml``.

    Attributes:
        variant: the file's name, e.g. ``"qwenimage"``.
        description: one line for listings.
        hub_ids: checkpoints of this variant on the Hugging Face hub.
        steps: native step count (diffusers' default, or the distilled schedule's length).
        guidance: default guidance (distilled guidance for FLUX.1-dev, CFG scale elsewhere).
        negative_prompt: default negative prompt for true CFG, ``None`` where CFG is off by default.
        size_multiple: image sides of the released model must be multiples of this.
        distilled: few-step distilled model (its presets start the refine at a schedule node).
        default_preset: the staged preset to use when none is named.
        sizes: aspect ratio (``"16:9"`` is width:height) → target and low-res sizes.
        presets: this variant's operating points (overlaying the generic presets).
    """

    variant: str
    description: str
    hub_ids: tuple[str, ...]
    steps: int
    guidance: float
    negative_prompt: str | None
    size_multiple: int
    distilled: bool
    default_preset: str
    sizes: dict[str, SizeEntry]
    presets: dict[str, SamplingConfig]

    def __post_init__(self) -> None:
        _check_steps(f"{self.variant}: steps", self.steps)
        if not self.guidance >= 0:
            raise ValueError(f"{self.variant}: guidance must be >= 0, got {self.guidance!r}")
        if self.default_preset not in {**presets(), **self.presets}:
            raise ValueError(f"{self.variant}: default_preset {self.default_preset!r} is not a preset")
        for ratio, entry in self.sizes.items():
            for side in (*entry.target, *entry.low_res):
                if isinstance(side, bool) or not isinstance(side, int) or side <= 0 or side % self.size_multiple:
                    raise ValueError(
                        f"{self.variant}: size {ratio!r} has side {side!r}, "
                        f"not a positive multiple of {self.size_multiple}"
                    )


_BACKBONE_KEYS = {
    "description",
    "hub_ids",
    "steps",
    "guidance",
    "negative_prompt",
    "size_multiple",
    "distilled",
    "default_preset",
}


def _reject_unknown(where: str, data: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown} (known: {sorted(known)})")


def backbone_defaults_from_dict(variant: str, data: dict[str, Any]) -> BackboneDefaults:
    """Build a variant's defaults from its parsed TOML; unknown tables and keys are errors."""
    _reject_unknown(variant, data, {"backbone", "sizes", "presets"})
    backbone = dict(data.get("backbone", {}))
    _reject_unknown(f"{variant} [backbone]", backbone, _BACKBONE_KEYS)
    missing = sorted({"steps", "guidance", "size_multiple"} - set(backbone))
    if missing:
        raise ValueError(f"{variant} [backbone]: missing keys {missing}")
    sizes = {}
    for ratio, entry in data.get("sizes", {}).items():
        _reject_unknown(f"{variant} [sizes] {ratio!r}", entry, {"target", "low_res"})
        sizes[ratio] = SizeEntry(tuple(entry["target"]), tuple(entry["low_res"]))  # type: ignore[arg-type]
    table = {name: config_from_dict(f"{variant}/{name}", p) for name, p in data.get("presets", {}).items()}
    return BackboneDefaults(
        variant=variant,
        description=backbone.get("description", ""),
        hub_ids=tuple(backbone.get("hub_ids", ())),
        steps=backbone["steps"],
        guidance=float(backbone["guidance"]),
        negative_prompt=backbone.get("negative_prompt"),
        size_multiple=backbone["size_multiple"],
        distilled=bool(backbone.get("distilled", False)),
        default_preset=backbone.get("default_preset", "12plus1"),
        sizes=sizes,
        presets=table,
    )


@functools.cache
def backbone_defaults(variant: str) -> BackboneDefaults:
    """The defaults, sizes and presets of one backbone variant (``configs/<variant>.toml``)."""
    if variant not in BACKBONE_VARIANTS:
        raise ValueError(f"unknown backbone variant {variant!r}; known: {list(BACKBONE_VARIANTS)}")
    return backbone_defaults_from_dict(variant, _read_toml(f"{variant}.toml"))
