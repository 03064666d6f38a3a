"""Stage-latency benchmark: presets against native sampling, side by side in one run."""

from __future__ import annotations

import json
import logging
import platform
import statistics
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from mrflow import __version__
from mrflow.chart import stacked_bars
from mrflow.io import atomic_write
from mrflow.output import STAGES, MrFlowOutput

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchSettings:
    """What to measure. Repeats are interleaved across presets so machine noise hits all alike."""

    presets: tuple[str, ...] = ("native", "12plus1", "20plus1")
    height: int | None = None
    width: int | None = None
    warmup: int = 1
    repeats: int = 3
    batch_size: int = 1
    prompt: str = "a red circle to the left of a blue square"
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.presets:
            raise ValueError("presets must not be empty")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


class PeakMemory:
    """Peak memory during a block: CUDA max allocated, or the process's peak RSS sampled on CPU."""

    def __init__(self, device: torch.device, interval: float = 0.005) -> None:
        self.device, self.interval = device, interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            import psutil

            process = psutil.Process()
            self.peak_bytes = process.memory_info().rss

            def sample() -> None:
                while not self._stop.wait(self.interval):
                    self.peak_bytes = max(self.peak_bytes, process.memory_info().rss)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _call(pipe: Any, preset: str, settings: BenchSettings, seed: int) -> MrFlowOutput:
    prompts = [settings.prompt] * settings.batch_size
    return pipe(prompts, height=settings.height, width=settings.width, preset=preset, seed=seed, output_type="pt")


def run_bench(pipe: Any, settings: BenchSettings) -> dict[str, Any]:
    """Warm up every preset, then ``repeats`` rounds of every preset in turn; summarise."""
    for preset in settings.presets:
        for _ in range(settings.warmup):
            _call(pipe, preset, settings, settings.seed)
    runs: dict[str, list[MrFlowOutput]] = {p: [] for p in settings.presets}
    peaks: dict[str, int] = dict.fromkeys(settings.presets, 0)
    for r in range(settings.repeats):
        for preset in settings.presets:
            with PeakMemory(pipe.device) as memory:
                runs[preset].append(_call(pipe, preset, settings, settings.seed + r))
            peaks[preset] = max(peaks[preset], memory.peak_bytes)
            logger.info("%s repeat %d: %.3f s", preset, r, runs[preset][-1].total_seconds)
    results = {p: _summarise(runs[p], peaks[p], settings.batch_size) for p in settings.presets}
    if "native" in results:
        native = results["native"]["total_seconds"]["median"]
        for result in results.values():
            result["speedup_vs_native"] = native / result["total_seconds"]["median"]
    return {"settings": asdict(settings), "environment": _environment(pipe), "results": results}


def _summarise(outputs: list[MrFlowOutput], peak_bytes: int, batch_size: int) -> dict[str, Any]:
    first = outputs[0]
    return {
        "config": first.config,
        "size": list(first.size),
        "low_res_size": None if first.low_res_size is None else list(first.low_res_size),
        "model_evals": first.model_evals,
        "stage_seconds": {s: _stats([o.stage_seconds[s] for o in outputs]) for s in STAGES},
        "total_seconds": _stats([o.total_seconds for o in outputs]),
        "seconds_per_image": statistics.median(o.total_seconds for o in outputs) / batch_size,
        "overhead_seconds": _stats([o.overhead_seconds for o in outputs]),
        "peak_memory_bytes": peak_bytes,
        "peak_memory_kind": "cuda_max_allocated" if first.images.device.type == "cuda" else "process_rss",
    }


def _environment(pipe: Any) -> dict[str, Any]:
    import diffusers

    device = pipe.device
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()} CPU"
    )
    source = str(getattr(pipe.backbone, "source", ""))
    return {
        "backbone": source,
        "family": pipe.backbone.family,
        "random_weights": source.startswith("random:"),
        "upscaler": pipe.upscaler.name,
        "device": str(device),
        "device_name": name,
        "torch_threads": torch.get_num_threads(),
        "dtype": str(pipe.backbone.dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "mrflow": __version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table: median seconds per stage, total, speedup, memory."""
    env, results = report["environment"], report["results"]
    stages = [s for s in STAGES if any(r["stage_seconds"][s]["median"] > 0 for r in results.values())]
    weights = "RANDOM weights (real-size architecture; latency only)" if env["random_weights"] else "pretrained weights"
    lines = [
        f"# mrflow bench: {env['backbone']} ({weights})",
        "",
        f"{env['device_name']} ({env['device']}, {env['dtype']}, {env['torch_threads']} threads), "
        f"upscaler {env['upscaler']}, torch {env['torch']}, diffusers {env['diffusers']}, mrflow {env['mrflow']}, "
        f"{env['date']}. Batch {report['settings']['batch_size']}, {report['settings']['warmup']} warm-up, "
        f"{report['settings']['repeats']} interleaved repeats; medians in seconds, [min–max] for the total.",
        "",
        "| preset | size | evals | " + " | ".join(stages) + " | total | speedup | peak MiB |",
        "|---|---|---|" + "---|" * len(stages) + "---|---|---|",
    ]
    for name, r in results.items():
        size = "x".join(map(str, r["size"])) + (
            "" if r["low_res_size"] is None else f" (low {'x'.join(map(str, r['low_res_size']))})"
        )
        evals = "+".join(str(v) for v in r["model_evals"].values())
        cells = " | ".join(f"{r['stage_seconds'][s]['median']:.4g}" for s in stages)
        total = r["total_seconds"]
        speed = f"{r['speedup_vs_native']:.2f}×" if "speedup_vs_native" in r else "–"
        lines.append(
            f"| {name} | {size} | {evals} | {cells} | {total['median']:.4g} [{total['min']:.4g}–{total['max']:.4g}] "
            f"| {speed} | {r['peak_memory_bytes'] / 2**20:.0f} |"
        )
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out_dir: str | Path, *, overwrite: bool = False) -> dict[str, Path]:
    """``bench.json``, ``bench.md`` and ``bench.png`` (stacked median stage times) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {kind: out / f"bench.{kind}" for kind in ("json", "md", "png")}
    if not overwrite:
        for path in paths.values():
            if path.exists():
                raise FileExistsError(f"{path} exists (pass overwrite to replace it)")
    text = json.dumps(report, indent=2)
    atomic_write(paths["json"], lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=overwrite)
    md = markdown(report)
    atomic_write(paths["md"], lambda tmp: tmp.write_text(md, encoding="utf-8"), overwrite=overwrite)
    rows = [(name, {s: v["median"] for s, v in r["stage_seconds"].items()}) for name, r in report["results"].items()]
    env = report["environment"]
    title = f"{env['backbone']} on {env['device_name']}: median seconds per stage" + (
        " (random weights)" if env["random_weights"] else ""
    )
    stacked_bars(rows, title, paths["png"], overwrite=overwrite)
    return paths
