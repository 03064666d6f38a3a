"""mrflow: fast text-to-image generation by staged sampling.

A flow-matching model samples at low resolution, a GAN upscales the decoded image in one pass,
and a brief flow refinement at the target size, from an explicit noise level, restores detail.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from mrflow.config import NativeConfig, StagedConfig
    from mrflow.output import MrFlowOutput
    from mrflow.pipeline import MrFlowPipeline

__all__ = ["MrFlowOutput", "MrFlowPipeline", "NativeConfig", "StagedConfig", "__version__"]

# Public names resolve on first use, so `import mrflow` (and `mrflow --help`) stays light.
_LAZY = {
    "MrFlowPipeline": "mrflow.pipeline",
    "MrFlowOutput": "mrflow.output",
    "StagedConfig": "mrflow.config",
    "NativeConfig": "mrflow.config",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mrflow' has no attribute {name!r}")
