"""Loading backbones from diffusers folders: the family comes from model_index.json."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import FluxPipeline, StableDiffusion3Pipeline

from mrflow import MrFlowPipeline
from mrflow.pipelines.flux import FluxBackbone
from mrflow.pipelines.sd3 import SD3Backbone


@pytest.mark.parametrize(("fixture", "adapter"), [("tiny_flux_pipe", FluxBackbone), ("tiny_sd3_pipe", SD3Backbone)])
def test_from_pretrained_folder_picks_adapter_and_reproduces(
    fixture: str, adapter: type, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    diffusers_pipe: FluxPipeline | StableDiffusion3Pipeline = request.getfixturevalue(fixture)
    diffusers_pipe.save_pretrained(tmp_path)
    loaded = MrFlowPipeline.from_pretrained(tmp_path, device="cpu", max_sequence_length=16)
    assert isinstance(loaded.backbone, adapter)
    assert loaded.backbone.dtype == torch.float32 and loaded.device.type == "cpu"
    direct = MrFlowPipeline(adapter(diffusers_pipe, max_sequence_length=16))
    for pipe in (loaded, direct):
        pipe.set_progress_bar_config(disable=True)
    kwargs = dict(height=32, width=32, seed=0, low_res_steps=2, output_type="pt")
    difference = loaded("a red cat", **kwargs).images - direct("a red cat", **kwargs).images
    assert difference.abs().max().item() <= 1e-5  # same weights; reloaded modules may differ by rounding


def test_folder_without_model_index_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no model_index.json"):
        MrFlowPipeline.from_pretrained(tmp_path)


def test_unsupported_pipeline_class_is_named(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    with pytest.raises(ValueError, match="unsupported pipeline class 'StableDiffusionPipeline'"):
        MrFlowPipeline.from_pretrained(tmp_path)
