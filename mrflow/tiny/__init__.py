"""The embedded default text-to-image model: a small flow UNet on folded pixels, trained by this project.

Its weights ship inside the package (``mrflow/weights/tiny``); ``MrFlowPipeline.from_pretrained()``
with no argument, or ``"tiny"``, loads them with :data:`DEFAULT_UPSCALER`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT_NAME = "tiny"
# SRVGGNetCompact ×4: fast on CPU and made for flat-shaded content like the training scenes.
DEFAULT_UPSCALER = "realesr-animevideov3"


def weights_dir() -> Path:
    """The shipped model folder (``model_index.json`` + ``unet/``, ``scheduler/``)."""
    path = Path(str(resources.files("mrflow").joinpath("weights", DEFAULT_NAME)))
    if not (path / "model_index.json").is_file():
        raise FileNotFoundError(f"the embedded model's weights are missing from {path}")
    return path


def default_upscaler() -> str:
    """The built-in Real-ESRGAN network for the embedded model, or bicubic where none is available."""
    from mrflow.upscalers import available_upscalers

    return DEFAULT_UPSCALER if DEFAULT_UPSCALER in available_upscalers() else "bicubic"
