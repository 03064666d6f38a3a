"""The stage-latency benchmark on tiny backbones, and the real-size random-weight configs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from mrflow import MrFlowPipeline
from mrflow.bench import BenchSettings, markdown, run_bench, write_report
from mrflow.output import STAGES
from mrflow.pipelines.flux import FluxBackbone
from mrflow.random_weights import available_configs, build_random_pipeline, parameter_counts


def test_bench_report_has_every_stage_and_consistent_speedups(tiny_flux_pipe, tmp_path: Path) -> None:
    pipe = MrFlowPipeline(FluxBackbone(tiny_flux_pipe, max_sequence_length=16))
    pipe.set_progress_bar_config(disable=True)
    settings = BenchSettings(("native", "12plus1"), 32, 32, warmup=1, repeats=2)
    report = run_bench(pipe, settings)
    native, staged = report["results"]["native"], report["results"]["12plus1"]
    assert set(staged["stage_seconds"]) == set(STAGES)
    for stage in (
        "text_encoding",
        "low_res_sampling",
        "low_res_decode",
        "upscale",
        "encode",
        "refine",
        "decode",
    ):
        assert staged["stage_seconds"][stage]["median"] > 0
        assert staged["stage_seconds"][stage]["min"] <= staged["stage_seconds"][stage]["median"]
    assert native["stage_seconds"]["native_sampling"]["median"] > 0 and native["model_evals"] == {"native_sampling": 28}
    assert staged["model_evals"] == {"low_res_sampling": 12, "refine": 1}
    ratio = native["total_seconds"]["median"] / staged["total_seconds"]["median"]
    assert staged["speedup_vs_native"] == pytest.approx(ratio) and native["speedup_vs_native"] == pytest.approx(1)
    assert staged["peak_memory_bytes"] > 0 and staged["peak_memory_kind"] == "process_rss"
    assert report["environment"]["random_weights"] is False

    paths = write_report(report, tmp_path)
    assert json.loads(paths["json"].read_text())["results"]["12plus1"]["low_res_size"] == [16, 16]
    table = paths["md"].read_text()
    assert "| 12plus1 | 32x32 (low 16x16) | 12+1 |" in table and "low_res_sampling" in table
    assert Image.open(paths["png"]).size[0] == 900
    with pytest.raises(FileExistsError):
        write_report(report, tmp_path)


def test_bench_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="repeats must be >= 1, got 0"):
        BenchSettings(repeats=0)
    with pytest.raises(ValueError, match="presets must not be empty"):
        BenchSettings(presets=())


@pytest.mark.parametrize(
    ("name", "transformer_params"),
    [("flux1-dev", 11.9e9), ("flux1-schnell", 11.9e9), ("sd3.5-medium", 2.24e9)],
)
def test_random_weight_configs_are_real_size(name: str, transformer_params: float) -> None:
    counts = parameter_counts(name)  # on the meta device: nothing is allocated
    assert counts["transformer"] == pytest.approx(transformer_params, rel=0.01)
    t5 = "text_encoder_2" if name.startswith("flux") else "text_encoder_3"
    assert counts[t5] == pytest.approx(4.76e9, rel=0.01)  # T5-XXL encoder
    assert name in available_configs()


def test_random_weights_cli_builds_from_a_config_file(tmp_path: Path) -> None:
    """The same code path as the real-size configs, on a config small enough for the CPU."""
    config = json.loads((Path(__file__).parents[1] / "configs" / "random" / "flux1-schnell.json").read_text())
    config["transformer"].update(
        num_layers=1,
        num_single_layers=1,
        num_attention_heads=2,
        attention_head_dim=16,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=[4, 6, 6],
    )
    config["vae"].update(block_out_channels=[8, 8, 8, 8], norm_num_groups=4, layers_per_block=1)
    config["text_encoder"].update(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=1, projection_dim=32
    )
    config["text_encoder_2"].update(d_model=32, d_kv=8, d_ff=37, num_layers=1, num_heads=4)
    path = tmp_path / "small.json"
    path.write_text(json.dumps(config))
    backbone = build_random_pipeline(path, "cpu")
    assert backbone.source == f"random:{path}" and backbone.default_steps == 4
    out = tmp_path / "report"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mrflow",
            "bench",
            "--random-weights",
            str(path),
            "--presets",
            "native,12plus1",
            "--height",
            "64",
            "--width",
            "64",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--out",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "bench.json").read_text())
    assert report["environment"]["random_weights"] is True
    assert "RANDOM weights" in (out / "bench.md").read_text()
    assert report["results"]["12plus1"]["speedup_vs_native"] > 0
    assert markdown(report) == (out / "bench.md").read_text()


def test_bench_cli_refuses_bad_arguments_before_loading(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mrflow", "bench", *args], capture_output=True, text=True)

    result = run("--presets", "native,warp", "--out", str(tmp_path))
    assert result.returncode == 2 and "unknown preset 'warp'" in result.stderr
    result = run("--random-weights", "flux9", "--out", str(tmp_path))
    assert result.returncode == 2 and "unknown architecture config 'flux9'" in result.stderr
    result = run("--repeats", "0")
    assert result.returncode == 2 and "argument --repeats" in result.stderr
