"""mrflow: fast text-to-image generation by staged sampling."""

from __future__ import annotations

__version__ = "0.1.0"
