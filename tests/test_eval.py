"""The prompt-adherence benchmark end to end: oracle ≈ 100 %, wrong images score low, files are valid."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from PIL import Image

from mrflow import MrFlowPipeline
from mrflow.eval import BENCHMARK_SEED, as_benchmark_prompts, benchmark_prompts, run_benchmark, summarise
from mrflow.pipelines.flux import FluxBackbone
from mrflow.scenes import sample_scenes
from mrflow.scenes.oracle import OraclePipeline


class ShuffledOracle(OraclePipeline):
    """Draws the scene of the *next* prompt in the batch: a model that ignores its prompt."""

    def __call__(self, prompt, **kwargs):
        prompts = list(prompt)
        return super().__call__(prompts[1:] + prompts[:1], **kwargs)


def test_prompt_set_is_fixed_and_mixed():
    prompts = benchmark_prompts(120)
    assert prompts == benchmark_prompts(120)
    assert Counter(p.prompt.kind for p in prompts) == {"single": 60, "relation": 40, "count": 20}
    assert len({p.text for p in prompts}) > 110
    assert benchmark_prompts(120, seed=BENCHMARK_SEED + 1) != prompts
    with pytest.raises(ValueError, match="count"):
        benchmark_prompts(2)


def test_oracle_scores_full_marks_and_writes_reports(tmp_path):
    prompts = benchmark_prompts(16)
    report = run_benchmark(
        OraclePipeline(),
        prompts,
        ("native", "12plus1"),
        seeds=(0, 1),
        out_dir=tmp_path,
        batch_size=5,
        grid_rows=4,
    )
    for preset in ("native", "12plus1"):
        accuracy = report["presets"][preset]["accuracy"]
        assert accuracy["overall"] >= 0.95, accuracy
        assert report["presets"][preset]["median_seconds_per_image"] > 0
    assert report["presets"]["12plus1"]["accuracy"]["low_res_overall"] >= 0.9
    assert report["presets"]["native"]["speedup"] == pytest.approx(1.0)
    assert len(report["results"]) == 2 * 2 * 16

    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["presets"].keys() == report["presets"].keys()
    assert saved["benchmark"]["kinds"] == dict(Counter(p.prompt.kind for p in prompts))
    markdown = (tmp_path / "report.md").read_text()
    assert "| `native` |" in markdown and "| `12plus1` |" in markdown and "speedup" in markdown
    with Image.open(tmp_path / "grid.png") as grid:
        grid.load()
        # prompt column + native + low-res + upscaled + refined, 4 rows of 192 px cells
        assert grid.size == (200 + 4 * 192, 18 + 4 * 192)


def test_prompt_ignoring_pipeline_scores_low():
    done: list[int] = []
    report = run_benchmark(
        ShuffledOracle(), benchmark_prompts(30), ("native",), batch_size=6, warmup=False, progress=done.append
    )
    assert report["presets"]["native"]["accuracy"]["overall"] < 0.3
    assert done == [6] * 5  # one progress call per batch, counting prompts


class GuidanceRecordingOracle(OraclePipeline):
    """The oracle, also taking a guidance scale, which it records in each output's config."""

    def __call__(self, prompt, guidance_scale=None, **kwargs):
        out = super().__call__(prompt, **kwargs)
        out.config["guidance_scale"] = guidance_scale
        return out


def test_guidance_reaches_every_call_and_the_report(tmp_path):
    prompts = benchmark_prompts(4)
    report = run_benchmark(
        GuidanceRecordingOracle(), prompts, ("native", "12plus1"), out_dir=tmp_path, guidance_scale=6.5
    )
    assert report["benchmark"]["guidance_scale"] == 6.5
    assert {entry["config"]["guidance_scale"] for entry in report["presets"].values()} == {6.5}
    assert "guidance 6.5;" in (tmp_path / "report.md").read_text(encoding="utf-8")
    default = run_benchmark(GuidanceRecordingOracle(), prompts, ("native",), warmup=False)
    assert default["benchmark"]["guidance_scale"] is None
    assert default["presets"]["native"]["config"]["guidance_scale"] is None  # not passed: the backbone's own
    with pytest.raises(ValueError, match="guidance_scale"):
        run_benchmark(GuidanceRecordingOracle(), prompts, ("native",), guidance_scale=-1.0)


def test_free_text_prompts_in_the_grammar_are_parsed():
    items = as_benchmark_prompts(["two red stars", "a blue ring to the left of a small green square"])
    assert [item.prompt.kind for item in items] == ["count", "relation"]
    with pytest.raises(ValueError, match="grammar"):
        as_benchmark_prompts(["a photo of an astronaut"])


def test_summarise_counts_only_named_attributes():
    rows = [
        {"attributes": {"colour": True, "shape": False, "count": True}, "correct": False, "kind": "single"},
        {
            "attributes": {"colour": True, "shape": True, "count": True, "size": True},
            "correct": True,
            "kind": "count",
        },
    ]
    summary = summarise(rows)
    assert summary["overall"] == 0.5 and summary["shape"] == 0.5 and summary["size"] == 1.0
    assert summary["num_scored"]["size"] == 1 and "relation" not in summary
    assert summary["attribute_mean"] == pytest.approx(6 / 7)


def test_benchmark_prompts_are_not_the_first_training_scenes():
    training = {s.caption for s in sample_scenes(0, 300)}
    held_out = [p.text for p in benchmark_prompts(60)]
    assert sum(text in training for text in held_out) < 10


def test_real_pipeline_end_to_end(tiny_flux_pipe, tmp_path):
    pipe = MrFlowPipeline(FluxBackbone(tiny_flux_pipe, max_sequence_length=16))
    pipe.set_progress_bar_config(disable=True)
    report = run_benchmark(
        pipe, benchmark_prompts(3)[:2], ("12plus1",), out_dir=tmp_path, height=64, width=64, warmup=False
    )
    entry = report["presets"]["12plus1"]
    assert 0.0 <= entry["accuracy"]["overall"] <= 1.0 and entry["speedup"] == pytest.approx(1.0)
    assert entry["stage_seconds"]["low_res_sampling"] > 0 and entry["config"]["mode"] == "staged"
    assert "guidance 3.5;" in (tmp_path / "report.md").read_text(encoding="utf-8")  # FLUX's default, as used
    with Image.open(tmp_path / "grid.png") as grid:  # prompt + low-res + upscaled + refined
        assert grid.size == (200 + 3 * 192, 18 + 2 * 192)
