"""The training scripts end to end on a handful of scenes: data cache, init, checkpoint, resume, export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel
from PIL import Image

from mrflow.tiny import weights_dir
from mrflow.tiny.data import load_captions, load_checkpoint, load_images
from mrflow.tiny.models import read_model_index

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(ROOT / "scripts" / name), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    result = _script("prepare_data.py", "--out", folder, "--count", "6", "--seed", "3")
    assert result.returncode == 0, result.stderr[-2000:]
    return folder


def test_prepare_data_writes_a_consistent_cache(data: Path) -> None:
    captions = load_captions(data)
    assert len(captions) == 6 and all(captions)
    for size in (64, 128, 256):
        images = load_images(data, size)
        assert images.shape == (6, size, size, 3)
        assert images.std() > 0  # rendered, not an empty memmap


def test_train_from_a_model_folder_then_resume_and_export(data: Path, tmp_path: Path) -> None:
    out, export = tmp_path / "run", tmp_path / "export"
    common = ("--data", data, "--out", out, "--batch", "2", "2", "1", "--threads", "1", "--save-every", "1")
    first = _script("train_flow.py", *common, "--steps", "2", "--init", weights_dir(), "--precision", "bf16")
    assert first.returncode == 0, first.stderr[-2000:]
    assert load_checkpoint(out / "last.pt")["step"] == 2
    second = _script(
        "train_flow.py",
        *common,
        "--steps",
        "3",
        "--resume",
        "--lr-schedule",
        "cosine",
        "--export",
        export,
        "--device",
        "cpu",
    )
    assert second.returncode == 0, second.stderr[-2000:]
    log = (out / "train.log").read_text(encoding="utf-8")
    assert "resumed from" in log and "at step 2" in log
    assert "bf16 on cpu" in log and "fp32 on cpu" in log  # each run logs its precision and device
    assert load_checkpoint(out / "last.pt")["step"] == 3
    shipped = UNet2DConditionModel.from_pretrained(weights_dir(), subfolder="unet").state_dict()
    trained = UNet2DConditionModel.from_pretrained(export, subfolder="unet").state_dict()
    # started from the shipped weights (an EMA of 3 small steps stays close) but did train
    deltas = [(trained[k].float() - shipped[k].float()).abs().max() for k in shipped]
    assert 0 < max(deltas) < 0.05
    assert json.loads((export / "model_index.json").read_text()) == json.loads(
        (weights_dir() / "model_index.json").read_text()
    )  # the export is a complete model folder like the shipped one


def test_device_is_checked_before_any_work(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cuda = "this machine has" if torch.cuda.is_available() else "CUDA is not available"
    for device, message in (("gpu", "not a device: 'gpu'"), ("mps", "only cpu and cuda"), ("cuda:99", cuda)):
        result = _script("train_flow.py", "--data", data, "--out", out, "--steps", "1", "--device", device)
        assert result.returncode != 0 and message in result.stderr, (device, result.stderr[-500:])
        assert "--device" in result.stderr and not out.exists()  # refused before the run folder is made


def test_architecture_and_prediction_options(data: Path, tmp_path: Path) -> None:
    out, export = tmp_path / "run", tmp_path / "export"
    common = ("--data", data, "--out", out, "--batch", "2", "2", "1", "--threads", "1", "--size-weights", "1", "0", "0")
    arch = ("--channels", "32", "32", "--layers-per-block", "1", "--fold", "2")
    arch += ("--prediction", "edm", "--skip-std", "0.12")
    result = _script("train_flow.py", *common, *arch, "--steps", "1", "--export", export)
    assert result.returncode == 0, result.stderr[-2000:]
    unet = json.loads((export / "unet" / "config.json").read_text())
    assert unet["block_out_channels"] == [32, 32] and unet["layers_per_block"] == 1 and unet["in_channels"] == 12
    index = json.loads((export / "model_index.json").read_text())
    assert (index["prediction"], index["fold"], index["skip_data_std"]) == ("edm", 2, 0.12)
    scheduler = json.loads((export / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["base_image_seq_len"] == 1024  # 64² in 2×2 folds: the shift per image size is kept
    # a checkpoint or a model folder trained for another prediction is refused, not silently mixed
    for other in (("--prediction", "sample"), ("--skip-std", "0.6")):
        resumed = _script("train_flow.py", *common, *arch[:7], *other, "--steps", "2", "--resume")
        assert resumed.returncode != 0 and "trained with --prediction 'edm' --skip-std 0.12" in resumed.stderr
    shipped = read_model_index(weights_dir()).prediction
    other = "sample" if shipped == "edm" else "edm"
    init = _script("train_flow.py", *common, "--steps", "1", "--init", weights_dir(), "--prediction", other)
    assert init.returncode != 0 and f"trained with --prediction '{shipped}'" in init.stderr
    for bad in (("--skip-std", "0.12"), ("--prediction", "edm", "--skip-std", "0")):
        refused = _script("train_flow.py", *common, *bad, "--steps", "1")
        assert refused.returncode != 0 and "--skip-std" in refused.stderr
    # without the options, a resumed run keeps the prediction it was trained with
    resumed = _script("train_flow.py", *common, *arch[:7], "--steps", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "predicts edm (skip std 0.12)" in (out / "train.log").read_text(encoding="utf-8")


def test_denoise_error_table_of_the_shipped_model() -> None:
    result = _script("denoise_error.py", weights_dir(), "--count", "2", "--sigmas", "0.02", "0.7", "--threads", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {
        line.split("|")[1].strip(): [float(v) for v in line.strip("| \n").split("|")[1:]]
        for line in result.stdout.splitlines()
        if line.startswith("| ") and "σ =" not in line
    }
    given, shipped = rows["noisy input"], rows[str(weights_dir())]
    assert given[0] == pytest.approx(0.0004 * 1.4, rel=0.5)  # σ²·E[(ε − x0)²], E ≈ 1 + σ_d²
    assert shipped[1] < given[1] / 10  # a trained model removes most of heavy noise


def test_shape_check_on_ground_truth_and_the_shipped_model(tmp_path: Path) -> None:
    oracle = _script("shape_check.py", "--oracle", "--colours", "2", "--threads", "1")
    assert oracle.returncode == 0, oracle.stderr[-2000:]
    assert "shape right 12/12" in oracle.stdout  # the detector reads every rendered shape

    grid = tmp_path / "shapes.png"
    shipped = _script("shape_check.py", weights_dir(), "--colours", "2", "--grid", grid, "--threads", "1")
    assert shipped.returncode == 0, shipped.stderr[-2000:]
    rows = [line for line in shipped.stdout.splitlines() if line.startswith("| ") and "asked" not in line]
    counts = [[int(v) for v in row.strip("| ").split("|")[1:]] for row in rows]
    assert len(counts) == 6 and all(sum(row) == 2 for row in counts)  # 2 seeds per shape word
    right = sum(row[i] for i, row in enumerate(counts))
    assert f"shape right {right}/12" in shipped.stdout
    with Image.open(grid) as image:
        assert image.size == (2 * 64, 6 * 64)  # one column per seed, one row per shape
    before = grid.read_bytes()
    again = _script("shape_check.py", weights_dir(), "--colours", "2", "--grid", grid)
    assert again.returncode == 2 and "exists" in again.stderr and grid.read_bytes() == before
    both = _script("shape_check.py", weights_dir(), "--oracle")
    assert both.returncode == 2 and "not both" in both.stderr
