"""The built wheel carries every subpackage, the adapters, the configs and the embedded weights."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_wheel_contents(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("mrflow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    top_levels = {name.split("/")[0] for name in names if not name.startswith("mrflow-")}
    assert top_levels == {"mrflow"}  # no top-level `pipelines` or `configs` module
    for package in ROOT.joinpath("mrflow").rglob("__init__.py"):
        assert package.relative_to(ROOT).as_posix() in names
    for adapter in ROOT.joinpath("pipelines").glob("*.py"):
        assert f"mrflow/pipelines/{adapter.name}" in names
    for config in ROOT.joinpath("configs").rglob("*.t*ml"):
        assert f"mrflow/configs/{config.relative_to(ROOT / 'configs').as_posix()}" in names
    for config in ROOT.joinpath("configs").rglob("*.json"):
        assert f"mrflow/configs/{config.relative_to(ROOT / 'configs').as_posix()}" in names
    for weight in ROOT.joinpath("mrflow", "weights").rglob("*"):
        if weight.is_file():
            assert weight.relative_to(ROOT).as_posix() in names
