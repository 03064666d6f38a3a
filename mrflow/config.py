"""Sampling configurations and named presets (the presets themselves are data in ``configs/``)."""

from __future__ import annotations

import dataclasses
import functools
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any


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
    """

    low_res_scale: float = 0.5
    low_res_steps: int = 12
    refine_steps: int = 1
    refine_sigma: float = 0.12

    def __post_init__(self) -> None:
        if not 0 < self.low_res_scale < 1:
            raise ValueError(f"low_res_scale must be in (0, 1), got {self.low_res_scale!r}")
        _check_steps("low_res_steps", self.low_res_steps)
        _check_steps("refine_steps", self.refine_steps)
        if not 0 < self.refine_sigma < 1:
            raise ValueError(f"refine_sigma must be in (0, 1), got {self.refine_sigma!r}")


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


@functools.cache
def presets() -> dict[str, SamplingConfig]:
    """The named presets shipped in ``configs/presets.toml``."""
    text = resources.files("mrflow.configs").joinpath("presets.toml").read_text(encoding="utf-8")
    return {name: config_from_dict(name, data) for name, data in tomllib.loads(text).items()}


def get_preset(name: str) -> SamplingConfig:
    table = presets()
    if name not in table:
        raise ValueError(f"unknown preset {name!r}; available: {sorted(table)}")
    return table[name]
