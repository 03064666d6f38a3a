"""Per-backbone data files (configs/<variant>.toml), refine_start, and loading adapters by folder."""

from __future__ import annotations

import copy
import tomllib
from importlib import resources

import pytest
import torch

from mrflow import MrFlowPipeline
from mrflow.config import (
    BACKBONE_VARIANTS,
    StagedConfig,
    backbone_defaults,
    backbone_defaults_from_dict,
    get_preset,
    presets_for,
)
from mrflow.pipeline import round_to_multiple
from mrflow.pipelines.flux import FluxBackbone


def _raw(variant: str) -> dict:
    text = resources.files("mrflow.configs").joinpath(f"{variant}.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


@pytest.mark.parametrize("variant", BACKBONE_VARIANTS)
def test_every_variant_loads_with_consistent_sizes(variant: str) -> None:
    defaults = backbone_defaults(variant)
    assert defaults.description
    if variant == "tiny":  # the embedded model: no hub id, trained on squares only
        assert not defaults.hub_ids and set(defaults.sizes) == {"1:1"}
    else:
        assert defaults.hub_ids and {"1:1", "16:9", "9:16"} <= set(defaults.sizes)
    for entry in defaults.sizes.values():
        assert entry.low_res == tuple(round_to_multiple(s * 0.5, defaults.size_multiple) for s in entry.target)
    table = presets_for(variant)
    assert defaults.default_preset in table
    for name in ("12plus1", "native"):
        assert name in table
    if defaults.distilled:
        assert table[defaults.default_preset].low_res_steps == defaults.steps


def test_paper_operating_points() -> None:
    for variant in ("flux-dev", "qwenimage", "zimage", "flux2-klein", "sd3"):
        table = presets_for(variant)
        assert (table["12plus1"].low_res_steps, table["12plus1"].refine_steps) == (12, 1)
        assert table["20plus1"].low_res_steps == 20
        assert 0.16 <= table["12plus1-text"].refine_sigma <= 0.20
    schnell = presets_for("flux-schnell")["4plus1"]
    assert (schnell.low_res_steps, schnell.refine_start, schnell.refine_sigma) == (4, "schedule_node", 0.25)
    assert backbone_defaults("qwenimage").negative_prompt == " "
    assert backbone_defaults("zimage-turbo").guidance == 0.0


def test_variant_presets_are_looked_up_first() -> None:
    assert isinstance(get_preset("4plus1", "flux-schnell"), StagedConfig)
    with pytest.raises(ValueError, match="unknown preset '4plus1'"):
        get_preset("4plus1")
    with pytest.raises(ValueError, match="unknown preset '8plus1' for 'flux-dev'"):
        get_preset("8plus1", "flux-dev")
    assert presets_for("not-a-variant") == presets_for("also-not") != {}
    with pytest.raises(ValueError, match="unknown backbone variant"):
        backbone_defaults("flux-pro")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["backbone"].update(guidence=1.0), r"unknown keys \['guidence'\]"),
        (lambda d: d["presets"]["4plus1"].update(refine_sigmas=0.2), r"unknown keys \['refine_sigmas'\]"),
        (lambda d: d.update(extra={}), r"unknown keys \['extra'\]"),
        (lambda d: d["sizes"]["1:1"].update(low=[1, 1]), r"unknown keys \['low'\]"),
        (lambda d: d["backbone"].pop("steps"), r"missing keys \['steps'\]"),
        (lambda d: d["sizes"]["1:1"].update(target=[1000, 1024]), "not a positive multiple of 16"),
        (lambda d: d["presets"]["4plus1"].update(refine_start="node"), "refine_start must be one of"),
        (lambda d: d["backbone"].update(default_preset="3plus1"), "default_preset '3plus1' is not a preset"),
    ],
)
def test_bad_data_is_rejected(edit, message: str) -> None:
    data = copy.deepcopy(_raw("flux-schnell"))
    edit(data)
    with pytest.raises(ValueError, match=message):
        backbone_defaults_from_dict("flux-schnell", data)


def test_schedule_node_needs_an_interior_node() -> None:
    with pytest.raises(ValueError, match="low_res_steps >= 2"):
        StagedConfig(low_res_steps=1, refine_start="schedule_node")


@pytest.fixture(scope="module")
def schnell() -> MrFlowPipeline:
    import tiny

    pipe = MrFlowPipeline(FluxBackbone(tiny.flux_pipeline(guidance_embeds=False)))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_schedule_node_reports_the_node_it_started_at(schnell: MrFlowPipeline) -> None:
    assert schnell.backbone.variant == "flux-schnell"
    # The tiny scheduler shifts dynamically, so the node nearest 0.25 is not 0.25 itself.
    native = schnell.backbone.native_sigmas(4, 48, 64)
    nodes = [float(s) for s in native[1:-1]]
    nearest = min(nodes, key=lambda s: abs(s - 0.25))
    out = schnell("a red cat", height=48, width=64, preset="4plus1", seed=9, output_type="pt")
    tail = [float(s) for s in native[[float(s) for s in native].index(nearest) :]]
    assert out.refine_sigma == pytest.approx(nearest) and out.refine_sigma != pytest.approx(0.25, abs=1e-3)
    assert out.sigmas["refine"] == pytest.approx(tail)
    assert out.model_evals["refine"] == len(tail) - 1
    assert out.config["refine_start"] == "schedule_node"


def test_schedule_node_equals_explicit_sigma_at_the_node(schnell: MrFlowPipeline) -> None:
    """Starting at a node with a one-step tail is the same as asking for that σ explicitly."""
    node = float(schnell.backbone.native_sigmas(4, 48, 64)[-2])
    kwargs = {"height": 48, "width": 64, "seed": 9, "output_type": "pt"}
    at_node = schnell("a red cat", preset="4plus1", refine_sigma=node, **kwargs)
    explicit = schnell("a red cat", preset=StagedConfig(low_res_steps=4, refine_sigma=node), **kwargs)
    assert at_node.sigmas["refine"] == pytest.approx(explicit.sigmas["refine"])
    torch.testing.assert_close(at_node.images, explicit.images)


def _save_and_load(pipe, folder, **kwargs):
    pipe.save_pretrained(folder)
    return MrFlowPipeline.from_pretrained(str(folder), device="cpu", **kwargs).backbone


def test_from_pretrained_picks_the_adapter_by_model_index(tmp_path) -> None:
    import tiny
    import tiny_families

    from mrflow.pipelines.flux2 import Flux2KleinBackbone
    from mrflow.pipelines.qwenimage import QwenImageBackbone
    from mrflow.pipelines.sd3 import SD3Backbone
    from mrflow.pipelines.zimage import ZImageBackbone

    cases = [
        (tiny.flux_pipeline(), "flux-dev", FluxBackbone, {}),
        (tiny.sd3_pipeline(), "sd3", SD3Backbone, {}),
        (tiny_families.qwenimage_pipeline(), "qwen", QwenImageBackbone, {}),
        (tiny_families.zimage_pipeline(), "Z-Image-Turbo", ZImageBackbone, {}),
        (
            tiny_families.flux2_klein_pipeline(distilled=True),
            "klein",
            Flux2KleinBackbone,
            {"text_encoder_out_layers": tiny_families.TINY_KLEIN_LAYERS},
        ),
    ]
    loaded = {}
    for pipe, name, adapter, kwargs in cases:
        loaded[name] = _save_and_load(pipe, tmp_path / name, **kwargs)
        assert isinstance(loaded[name], adapter), name
        assert loaded[name].dtype == torch.float32
    # Z-Image base and Turbo share a pipeline class: the folder name picks Turbo's defaults.
    assert loaded["Z-Image-Turbo"].variant == "zimage-turbo"
    assert loaded["klein"].variant == "flux2-klein-distilled"
    assert loaded["flux-dev"].variant == "flux-dev"


def test_loaded_pipeline_still_matches(tmp_path) -> None:
    import tiny_families

    pipe = tiny_families.qwenimage_pipeline()
    pipe.save_pretrained(tmp_path / "qwen")
    loaded = MrFlowPipeline.from_pretrained(str(tmp_path / "qwen"), device="cpu")
    fresh = MrFlowPipeline(type(loaded.backbone)(pipe))
    for p in (loaded, fresh):
        p.set_progress_bar_config(disable=True)
    kwargs = {
        "height": 32,
        "width": 32,
        "preset": "native",
        "num_inference_steps": 2,
        "seed": 1,
        "output_type": "pt",
    }
    torch.testing.assert_close(loaded("a red cat", **kwargs).images, fresh("a red cat", **kwargs).images)
