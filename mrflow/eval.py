"""Prompt-adherence benchmark: does the image show the colours, shapes, counts, sizes and layout asked for?

A fixed held-out prompt set is drawn from the scene grammar (:mod:`mrflow.scenes`) with its own seed;
every image is scored attribute by attribute by the deterministic detector, for native sampling and for
the staged presets, timed in the same run. Outputs (written atomically into ``out_dir``):
``report.json`` (everything), ``report.md`` (tables) and ``grid.png`` (prompt | native | low-res |
upscaled | refined).
"""

from __future__ import annotations

import itertools
import json
import logging
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from mrflow.eval_report import make_grid, markdown_report
from mrflow.io import atomic_write
from mrflow.output import Images, MrFlowOutput
from mrflow.scenes import Prompt, parse_caption, sample_scene, score_image
from mrflow.scenes.detect import ATTRIBUTES

logger = logging.getLogger(__name__)

# Seed of the held-out prompt set. Training data must be drawn from other seeds.
BENCHMARK_SEED = 2_026_070_401
DEFAULT_PROMPT_COUNT = 150
KIND_SHARES: dict[str, float] = {"single": 1 / 2, "relation": 1 / 3, "count": 1 / 6}


@dataclass(frozen=True)
class BenchmarkPrompt:
    """A prompt text and the structure the detector scores it against."""

    text: str
    prompt: Prompt

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ValueError("benchmark prompt text must not be empty")


class TextToImage(Protocol):
    """What the benchmark calls: :class:`mrflow.MrFlowPipeline` or anything with the same call."""

    def __call__(
        self, prompt: list[str], *, height: int, width: int, preset: str, seed: list[int], output_type: str
    ) -> MrFlowOutput: ...


def benchmark_prompts(count: int = DEFAULT_PROMPT_COUNT, seed: int = BENCHMARK_SEED) -> list[BenchmarkPrompt]:
    """The held-out prompt set: exactly ``KIND_SHARES`` of each kind (rounded), in sampling order.

    Raises:
        ValueError: if ``count`` < 3.
    """
    if count < 3:
        raise ValueError(f"count must be at least 3, got {count!r}")
    quota = {kind: round(count * share) for kind, share in KIND_SHARES.items()}
    quota["single"] = count - quota["relation"] - quota["count"]
    chosen: list[BenchmarkPrompt] = []
    taken: Counter[str] = Counter()
    for index in itertools.count():  # scene i of sample_scenes(seed, ·), drawn until every quota is met
        scene = sample_scene(np.random.default_rng([seed, index]))
        if taken[scene.prompt.kind] < quota[scene.prompt.kind]:
            taken[scene.prompt.kind] += 1
            chosen.append(BenchmarkPrompt(scene.caption, scene.prompt))
            if len(chosen) == count:
                return chosen
    raise AssertionError("unreachable")


def as_benchmark_prompts(prompts: Sequence[BenchmarkPrompt | str]) -> list[BenchmarkPrompt]:
    """Accept structured prompts or caption strings in the grammar (parsed with ``parse_caption``)."""
    return [p if isinstance(p, BenchmarkPrompt) else BenchmarkPrompt(p, parse_caption(p)) for p in prompts]


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float in [0, 1] → (B, H, W, 3) uint8."""
    return (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _score_batch(batch: list[BenchmarkPrompt], images: Images) -> list[dict[str, Any]]:
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"the pipeline must return (B, 3, H, W) tensors for output_type='pt', got {type(images)}")
    rows = []
    for item, image in zip(batch, _to_uint8(images), strict=True):
        score = score_image(item.prompt, image)
        rows.append({"attributes": score.attributes, "correct": score.correct})
    return rows


@dataclass
class _PresetRun:
    """What one preset accumulates over the run (internal, mutable)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    per_image: list[float] = field(default_factory=list)
    total_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    examples: dict[str, list[torch.Tensor]] = field(default_factory=lambda: defaultdict(list))
    config: dict[str, Any] = field(default_factory=dict)

    def add(
        self, preset: str, batch: list[BenchmarkPrompt], image_seeds: list[int], out: MrFlowOutput, grid_rows: int
    ) -> None:
        """Record one call: time it per image, score its final (and low-res) images, keep grid examples."""
        self.config = dict(out.config)
        self.per_image.append(out.total_seconds / len(batch))
        self.total_seconds += out.total_seconds
        for stage, seconds in out.stage_seconds.items():
            self.stage_seconds[stage] += seconds
        scored = _score_batch(batch, out.images)
        low_res = _score_batch(batch, out.low_res_images) if out.low_res_images is not None else None
        for offset, (item, row) in enumerate(zip(batch, scored, strict=True)):
            row.update(preset=preset, seed=image_seeds[offset], prompt=item.text)
            row["kind"] = item.prompt.kind
            if low_res is not None:
                row["low_res_correct"] = low_res[offset]["correct"]
            self.rows.append(row)
        keep = grid_rows - sum(len(t) for t in self.examples.get("images", []))
        for name in ("images", "low_res_images", "upscaled_images") if keep > 0 else ():
            value = getattr(out, name)
            if value is not None:
                self.examples[name].append(value[:keep].detach().float().cpu())

    def summary(self) -> dict[str, Any]:
        return {
            "accuracy": summarise(self.rows),
            "median_seconds_per_image": statistics.median(self.per_image),
            "total_seconds": self.total_seconds,
            "stage_seconds": dict(self.stage_seconds),
            "config": self.config,
        }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy of scored rows: ``overall`` (all attributes right), ``attribute_mean`` and per attribute."""
    if not rows:
        raise ValueError("no scored images to summarise")
    counts = {name: [r["attributes"][name] for r in rows if name in r["attributes"]] for name in ATTRIBUTES}
    accuracy: dict[str, Any] = {
        "overall": float(np.mean([r["correct"] for r in rows])),
        "attribute_mean": float(np.mean([v for r in rows for v in r["attributes"].values()])),
    }
    accuracy.update({name: float(np.mean(values)) for name, values in counts.items() if values})
    by_kind = defaultdict(list)
    for row in rows:
        by_kind[row["kind"]].append(row["correct"])
    accuracy["by_kind"] = {kind: float(np.mean(values)) for kind, values in sorted(by_kind.items())}
    accuracy["num_scored"] = {name: len(values) for name, values in counts.items() if values}
    low_res = [r["low_res_correct"] for r in rows if "low_res_correct" in r]
    if low_res:
        accuracy["low_res_overall"] = float(np.mean(low_res))
    return accuracy


def run_benchmark(
    pipeline: TextToImage,
    prompts: Sequence[BenchmarkPrompt | str] | None = None,
    presets: Sequence[str] = ("native", "12plus1"),
    seeds: Sequence[int] = (0,),
    out_dir: str | Path | None = None,
    *,
    height: int = 256,
    width: int = 256,
    batch_size: int = 1,
    grid_rows: int = 8,
    guidance_scale: float | None = None,
    warmup: bool = True,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Score ``pipeline`` on ``prompts`` for every preset; the first preset is the speed baseline.

    Args:
        pipeline: called as ``pipeline(texts, height=, width=, preset=, seed=[...], output_type="pt")``.
        prompts: structured prompts or captions in the grammar; ``None`` = :func:`benchmark_prompts`.
        presets: preset names, e.g. ``("native", "12plus1")``; speedups are relative to the first.
        seeds: each prompt is generated once per seed (image seeds derive from it and the prompt index).
        out_dir: where to write ``report.json``, ``report.md`` and ``grid.png`` (created; files replaced).
            ``None`` writes nothing.
        height, width: target size in pixels (the detector needs square images).
        batch_size: prompts per pipeline call; the time per image is the call's time / batch size.
        grid_rows: prompts shown in the grid.
        guidance_scale: passed to every call (both flow stages); ``None`` keeps the backbone's default.
        warmup: run one unscored call per preset first, so lazy initialisation is not timed.
        progress: called with the number of prompts just finished (with every preset), e.g. a bar's update.

    Returns:
        The report: ``benchmark`` (settings), ``presets`` (accuracy and timing per preset) and ``results``
        (one row per image).
    """
    if height != width:
        raise ValueError(f"the detector scores square images, got {height}x{width}")
    if not presets or batch_size < 1 or not seeds:
        raise ValueError(f"need presets, seeds and batch_size >= 1, got {presets!r}, {seeds!r}, {batch_size!r}")
    items = benchmark_prompts() if prompts is None else as_benchmark_prompts(prompts)
    if guidance_scale is not None and not guidance_scale >= 0:
        raise ValueError(f"guidance_scale must be >= 0, got {guidance_scale!r}")
    settings: dict[str, Any] = {"height": height, "width": width}  # passed to every pipeline call
    if guidance_scale is not None:
        settings["guidance_scale"] = guidance_scale
    if warmup:
        for preset in presets:
            pipeline([items[0].text], **settings, preset=preset, seed=[0], output_type="pt")
    runs = {preset: _PresetRun() for preset in presets}
    logger.info("benchmark: %d prompts × %d seeds, presets %s", len(items), len(seeds), list(presets))
    for seed in seeds:
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            image_seeds = [seed * 100_003 + start + i for i in range(len(batch))]
            for preset in presets:  # interleaved, so load changes on the machine hit every preset alike
                out = pipeline([p.text for p in batch], **settings, preset=preset, seed=image_seeds, output_type="pt")
                runs[preset].add(preset, batch, image_seeds, out, grid_rows)
            if progress is not None:
                progress(len(batch))
    report = _report(items, presets, seeds, (height, width), batch_size, runs)
    report["benchmark"]["guidance_scale"] = guidance_scale
    if out_dir is not None:
        examples = {preset: {k: torch.cat(v) for k, v in run.examples.items()} for preset, run in runs.items()}
        write_report(report, examples, [item.text for item in items[:grid_rows]], Path(out_dir))
    return report


def _report(
    items: list[BenchmarkPrompt],
    presets: Sequence[str],
    seeds: Sequence[int],
    size: tuple[int, int],
    batch_size: int,
    runs: dict[str, _PresetRun],
) -> dict[str, Any]:
    summaries = {preset: run.summary() for preset, run in runs.items()}
    baseline = summaries[presets[0]]["median_seconds_per_image"]
    for entry in summaries.values():
        median = entry["median_seconds_per_image"]
        entry["speedup"] = baseline / median if median > 0 else None
    return {
        "benchmark": {
            "num_prompts": len(items),
            "kinds": dict(Counter(item.prompt.kind for item in items)),
            "seeds": list(seeds),
            "size": list(size),
            "batch_size": batch_size,
            "baseline": presets[0],
        },
        "presets": summaries,
        "results": [row for run in runs.values() for row in run.rows],
    }


def _text_writer(text: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_text(text, encoding="utf-8")

    return write


def write_report(
    report: dict[str, Any],
    examples: dict[str, dict[str, torch.Tensor]],
    grid_prompts: list[str],
    out_dir: Path,
) -> None:
    """Write ``report.json``, ``report.md`` and ``grid.png`` atomically into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "report.json", _text_writer(json.dumps(report, indent=1) + "\n"), overwrite=True)
    atomic_write(out_dir / "report.md", _text_writer(markdown_report(report)), overwrite=True)
    grid = make_grid(grid_prompts, examples)
    atomic_write(out_dir / "grid.png", lambda tmp: grid.save(tmp, format="PNG"), overwrite=True)
    logger.info("benchmark report written to %s", out_dir)
