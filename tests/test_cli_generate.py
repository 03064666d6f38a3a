"""``mrflow generate`` end to end in subprocesses, on a tiny FLUX folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from mrflow.cli import main
from mrflow.generate import PromptSpec, plan_jobs, png_text, read_png_metadata, read_prompt_file, slugify

FAST = ["--height", "32", "--width", "32", "--low-res-steps", "2", "--quiet"]


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory: pytest.TempPathFactory, tiny_flux_pipe) -> Path:
    path = tmp_path_factory.mktemp("tiny-flux")
    tiny_flux_pipe.save_pretrained(path)
    return path


def mrflow(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mrflow", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_generate_writes_pngs_with_metadata_and_from_png_reproduces(flux_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = mrflow(
        "generate",
        "a red cat",
        "a ../../dog",
        "--backbone",
        flux_dir,
        "--seed",
        "7",
        "--num-images",
        "2",
        "--save-intermediates",
        "--out",
        out,
        *FAST,
    )
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "00000-a-red-cat.low_res.png",
        "00000-a-red-cat.png",
        "00000-a-red-cat.upscaled.png",
        "00001-a-red-cat.low_res.png",
        "00001-a-red-cat.png",
        "00001-a-red-cat.upscaled.png",
        "00002-a-dog.low_res.png",
        "00002-a-dog.png",
        "00002-a-dog.upscaled.png",
        "00003-a-dog.low_res.png",
        "00003-a-dog.png",
        "00003-a-dog.upscaled.png",
        "manifest.jsonl",
    ]
    assert Image.open(out / "00000-a-red-cat.low_res.png").size == (16, 16)
    meta = read_png_metadata(out / "00002-a-dog.png")
    assert meta["prompt"] == "a ../../dog" and meta["seed"] == 9
    assert meta["config"]["low_res_steps"] == 2 and meta["refine_sigma"] == pytest.approx(0.12)
    assert set(meta["stage_seconds"]) >= {"low_res_sampling", "upscale", "refine", "decode"}
    assert meta["mrflow_version"] and meta["backbone"] == str(flux_dir)
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["index"] for r in manifest] == [0, 1, 2, 3] and [r["seed"] for r in manifest] == [7, 8, 9, 10]

    again = tmp_path / "again"
    result = mrflow("generate", "--from-png", out / "00002-a-dog.png", "--out", again, "--quiet")
    assert result.returncode == 0, result.stderr
    (copy,) = again.glob("*-a-dog.png")
    assert np.array_equal(pixels(copy), pixels(out / "00002-a-dog.png"))


def test_from_png_replays_the_recorded_guidance_not_todays_default(flux_dir: Path, tmp_path: Path) -> None:
    """An image made with a default guidance is replayed with that scale, even once the default differs:
    here its record is rewritten to say it was made at 1.0 (FLUX's default today is 3.5)."""
    args = ["generate", "a red cat", "--backbone", flux_dir, "--seed", "4", *FAST]
    assert mrflow(*args, "--out", tmp_path / "default").returncode == 0
    (made,) = (tmp_path / "default").glob("*.png")
    meta = read_png_metadata(made)
    assert meta["config"]["guidance_scale"] == 3.5 and "guidance_scale" not in meta["settings"]
    meta["config"]["guidance_scale"] = 1.0
    info = PngInfo()
    for key, value in png_text(meta).items():
        info.add_text(key, value)
    older = tmp_path / "older.png"
    with Image.open(made) as image:
        image.save(older, pnginfo=info)
    assert mrflow("generate", "--from-png", older, "--out", tmp_path / "replay", "--quiet").returncode == 0
    assert mrflow(*args, "--guidance", "1", "--out", tmp_path / "at1").returncode == 0
    (replayed,), (at1,) = (tmp_path / "replay").glob("*.png"), (tmp_path / "at1").glob("*.png")
    assert np.array_equal(pixels(replayed), pixels(at1))
    assert not np.array_equal(pixels(at1), pixels(made))  # the scale matters for this model


def test_no_overwrite_then_resume_then_overwrite(flux_dir: Path, tmp_path: Path) -> None:
    args = ["generate", "a red cat", "--backbone", flux_dir, "--seed", "1", "--out", tmp_path, *FAST]
    assert mrflow(*args).returncode == 0
    target = tmp_path / "00000-a-red-cat.png"
    before = target.read_bytes()

    clash = mrflow(*args[:-1], "--seed", "2")
    assert clash.returncode == 2
    assert "00000-a-red-cat.png exists" in clash.stderr and "--overwrite" in clash.stderr
    assert target.read_bytes() == before

    resumed = mrflow(*args[:-1], "a blue dog")  # one new prompt, one already done
    assert resumed.returncode == 2  # without --resume the existing file still blocks
    resumed = mrflow(
        "generate",
        "a red cat",
        "a blue dog",
        "--backbone",
        flux_dir,
        "--seed",
        "5",
        "--resume",
        "--out",
        tmp_path,
        *FAST,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert target.read_bytes() == before
    assert read_png_metadata(tmp_path / "00001-a-blue-dog.png")["seed"] == 6
    assert not list(tmp_path.glob(".*.tmp"))

    replaced = mrflow(*args[:-1], "--seed", "3", "--overwrite", "--quiet")
    assert replaced.returncode == 0
    assert read_png_metadata(target)["seed"] == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--refine-sigma", "1.5"], "argument --refine-sigma"),
        (["--refine-sigma", "abc"], "argument --refine-sigma"),
        (["--low-res-steps", "0"], "argument --low-res-steps"),
        (["--num-images", "-1"], "argument --num-images"),
        (["--guidance", "-2"], "argument --guidance"),
        (["--height", "0"], "argument --height"),
        (["--dtype", "float8"], "argument --dtype"),
        (["--device", "tpu:0:x"], "argument --device"),
        (["--preset", "turbo"], "unknown preset 'turbo'"),
        (["--preset", "native", "--refine-sigma", "0.2"], "do not apply to --preset native"),
        (["--steps", "10"], "--steps applies to --preset native"),
        (["--overwrite", "--resume"], "--overwrite and --resume"),
        (["--seed", "-4"], "argument --seed"),
    ],
)
def test_bad_arguments_exit_2_naming_the_argument(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        code = main(["generate", "a cat", "--backbone", str(tmp_path / "missing"), "--out", str(tmp_path), *argv])
        raise SystemExit(code)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "manifest.jsonl").exists()


def test_bad_argument_in_a_subprocess_fails_before_loading(tmp_path: Path) -> None:
    result = mrflow("generate", "--backbone", tmp_path / "not-there", "--out", tmp_path)
    assert result.returncode == 2 and "no prompt given" in result.stderr
    result = mrflow("generate", "x", "--refine-sigma", "2", "--backbone", tmp_path / "not-there")
    assert result.returncode == 2 and "argument --refine-sigma" in result.stderr


def test_prompt_files(tmp_path: Path) -> None:
    text = tmp_path / "p.txt"
    text.write_text("a cat\n\n# skipped\n  a dog  \n")
    assert read_prompt_file(text) == [PromptSpec("a cat"), PromptSpec("a dog")]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "a cat", "seed": 4}\n{"prompt": "a dog", "negative_prompt": "blur"}\n')
    assert read_prompt_file(jsonl) == [PromptSpec("a cat", None, 4), PromptSpec("a dog", "blur", None)]
    jsonl.write_text('{"prompt": "a cat", "sed": 4}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:1: unknown keys \['sed'\]"):
        read_prompt_file(jsonl)
    jsonl.write_text('{"prompt": "a cat"\n')
    with pytest.raises(ValueError, match="p.jsonl:1: not valid JSON"):
        read_prompt_file(jsonl)


def test_names_are_sanitised_and_bounded(tmp_path: Path) -> None:
    assert slugify("../../etc/passwd") == "etc-passwd"
    assert slugify("Ünïcödé  café, ☕!") == "unicode-cafe"
    assert slugify("/// ...") == "image"
    assert len(slugify("word " * 100)) <= 48
    jobs = plan_jobs([PromptSpec("../x/" * 40), PromptSpec("a", seed=10)], 2, 100, tmp_path)
    assert [j.seed for j in jobs] == [100, 101, 10, 11]
    for job in jobs:
        assert job.path.parent == tmp_path and "/" not in job.path.name and len(job.path.name) < 70


def test_two_processes_with_accelerate_write_every_image_once(flux_dir: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"prompt number {i}\n" for i in range(5)))
    out = tmp_path / "out"
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "0",
    ]
    command = [
        *launch,
        "-m",
        "mrflow",
        "generate",
        "--prompts-file",
        str(prompts),
        "--backbone",
        str(flux_dir),
        "--seed",
        "3",
        "--out",
        str(out),
        "--device",
        "cpu",
        *FAST,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["index"] for r in manifest) == [0, 1, 2, 3, 4]
    assert {r["process"] for r in manifest} == {0, 1}
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted(r["path"] for r in manifest) and len(pngs) == 5
    assert [read_png_metadata(out / r["path"])["seed"] for r in manifest] == [3, 4, 5, 6, 7]
