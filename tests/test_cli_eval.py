"""``mrflow eval`` end to end on the oracle pipeline (renders each prompt's own scene)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_eval_oracle_scores_everything_and_never_clobbers(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "mrflow",
        "eval",
        "--oracle",
        "--prompts",
        "12",
        "--size",
        "128",
        "--out",
        str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["presets"]["native"]["accuracy"]["overall"] == 1.0
    assert list(report["presets"]) == ["native", "12plus1", "12plus1-x4"]  # the default presets
    assert len(report["results"]) == 3 * 12
    assert "12/12" in result.stderr  # the progress bar reached the end
    before = (tmp_path / "report.json").read_bytes()
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "report.json exists" in again.stderr
    assert (tmp_path / "report.json").read_bytes() == before
    bad = subprocess.run(
        [*command[:4], "--presets", "native", "warp", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "argument --presets" in bad.stderr
    negative = subprocess.run(
        [*command[:4], "--guidance", "-2", "--out", str(tmp_path / "y")], capture_output=True, text=True, timeout=300
    )
    assert negative.returncode == 2 and "--guidance" in negative.stderr and not (tmp_path / "y").exists()
