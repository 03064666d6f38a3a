"""Batch text-to-image to files: prompt lists, output names, PNG metadata, resume and manifests.

The command line (``mrflow generate``) is a thin layer over these functions.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from mrflow import __version__
from mrflow.io import atomic_write, save_image
from mrflow.output import MrFlowOutput
from mrflow.seeding import MAX_SEED

logger = logging.getLogger(__name__)

METADATA_KEY = "mrflow"
MAX_SLUG = 48


@dataclass(frozen=True)
class PromptSpec:
    """One line of a prompt file: the prompt and optional per-prompt negative prompt and seed."""

    prompt: str
    negative_prompt: str | None = None
    seed: int | None = None


@dataclass(frozen=True)
class Job:
    """One image to make: its global index, prompt, seed and output path."""

    index: int
    prompt: str
    negative_prompt: str | None
    seed: int
    path: Path


def read_prompt_file(path: str | Path) -> list[PromptSpec]:
    """Prompts from a text file (one per line, blank lines and ``#`` comments skipped) or JSONL.

    JSONL lines are objects with ``prompt`` and optionally ``negative_prompt`` and ``seed``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read prompt file {path}: {exc}") from exc
    specs: list[PromptSpec] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or (line.startswith("#") and path.suffix != ".jsonl"):
            continue
        specs.append(_parse_jsonl_line(path, number, line) if path.suffix == ".jsonl" else PromptSpec(line))
    if not specs:
        raise ValueError(f"prompt file {path} contains no prompts")
    return specs


def _parse_jsonl_line(path: Path, number: int, line: str) -> PromptSpec:
    where = f"{path}:{number}"
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not valid JSON ({exc.msg})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("prompt"), str) or not data["prompt"].strip():
        raise ValueError(f"{where}: expected an object with a non-empty string 'prompt'")
    unknown = sorted(set(data) - {"prompt", "negative_prompt", "seed"})
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}")
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED):
        raise ValueError(f"{where}: seed must be an integer in [0, 2**63 - 1], got {seed!r}")
    negative = data.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        raise ValueError(f"{where}: negative_prompt must be a string, got {negative!r}")
    return PromptSpec(data["prompt"], negative, seed)


def slugify(prompt: str, max_length: int = MAX_SLUG) -> str:
    """A safe file-name stem from a prompt: ASCII letters, digits and dashes, bounded length.

    No separators, dots or control characters survive, so a prompt cannot steer the path.
    """
    ascii_text = unicodedata.normalize("NFKD", prompt).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_length].rstrip("-") or "image"


def plan_jobs(
    specs: list[PromptSpec], num_images: int, seed: int | None, out_dir: Path, suffix: str = ".png"
) -> list[Job]:
    """Every image to make, in order: prompt ``p`` image ``k`` has index ``p·num_images + k``.

    Seeds: a prompt's own seed plus ``k``; else ``seed`` plus the index; else a random base plus
    the index. Names are ``{index:05d}-{slug}.png`` so a rerun finds them (``--resume``).
    """
    base = secrets.randbits(62) if seed is None else seed
    jobs = []
    for p, spec in enumerate(specs):
        for k in range(num_images):
            index = p * num_images + k
            image_seed = spec.seed + k if spec.seed is not None else base + index
            path = out_dir / f"{index:05d}-{slugify(spec.prompt)}{suffix}"
            jobs.append(Job(index, spec.prompt, spec.negative_prompt, image_seed, path))
    return jobs


def intermediate_paths(path: Path) -> dict[str, Path]:
    return {name: path.with_name(f"{path.stem}.{name}{path.suffix}") for name in ("low_res", "upscaled")}


def batches(jobs: list[Job], batch_size: int) -> Iterable[list[Job]]:
    """Consecutive jobs sharing a negative prompt (or none), at most ``batch_size`` at a time."""
    batch: list[Job] = []
    for job in jobs:
        if batch and (len(batch) == batch_size or (job.negative_prompt is None) != (batch[0].negative_prompt is None)):
            yield batch
            batch = []
        batch.append(job)
    if batch:
        yield batch


def image_metadata(
    job: Job, output: MrFlowOutput, i: int, settings: dict[str, Any], source: dict[str, Any]
) -> dict[str, Any]:
    """Everything needed to reproduce image ``i`` of ``output`` (made for ``job``)."""
    return {
        "prompt": job.prompt,
        "negative_prompt": job.negative_prompt,
        "seed": job.seed,
        "refine_seed": None if output.refine_seeds is None else output.refine_seeds[i],
        "settings": settings,
        "config": output.config,
        "refine_sigma": output.refine_sigma,
        "size": list(output.size),
        "low_res_size": None if output.low_res_size is None else list(output.low_res_size),
        "sigmas": output.sigmas,
        "stage_seconds": {k: round(v, 6) for k, v in output.stage_seconds.items()},
        "total_seconds": round(output.total_seconds, 6),
        "batch_size": len(output.seeds),
        "mrflow_version": __version__,
        **source,
    }


def png_text(metadata: dict[str, Any]) -> dict[str, str]:
    """PNG text chunks: the full JSON under ``mrflow`` and a one-paragraph ``parameters`` summary."""
    config = metadata["config"]
    if config["mode"] == "staged":
        steps = f"{config['low_res_steps']}+{config['refine_steps']}, refine sigma: {config['refine_sigma']}"
    else:
        steps = str(config.get("steps") or "default")
    summary = [
        metadata["prompt"],
        *([f"Negative prompt: {metadata['negative_prompt']}"] if metadata["negative_prompt"] else []),
        f"Steps: {steps}, Sampler: mrflow {config['mode']} Euler, Seed: {metadata['seed']}, "
        f"Size: {metadata['size'][1]}x{metadata['size'][0]}, Model: {metadata.get('backbone')}, "
        f"Upscaler: {metadata.get('upscaler')}, Version: mrflow {metadata['mrflow_version']}",
    ]
    return {METADATA_KEY: json.dumps(metadata, sort_keys=True), "parameters": "\n".join(summary)}


def read_png_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata mrflow stored in a PNG; ``ValueError`` naming the file otherwise."""
    try:
        with Image.open(path) as image:
            text = getattr(image, "text", {}).get(METADATA_KEY)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    if text is None:
        raise ValueError(f"{path} has no mrflow metadata (was it written by mrflow generate?)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: corrupt mrflow metadata ({exc.msg})") from exc


def run_jobs(
    pipe: Any,
    jobs: list[Job],
    settings: dict[str, Any],
    source: dict[str, Any],
    *,
    batch_size: int = 1,
    overwrite: bool = False,
    save_intermediates: bool = False,
    on_batch: Callable[[list[Job], MrFlowOutput], None] | None = None,
) -> list[dict[str, Any]]:
    """Generate and write every job; returns one manifest record per image written.

    Args:
        pipe: a :class:`~mrflow.pipeline.MrFlowPipeline`.
        settings: keyword arguments for the pipeline call shared by all jobs (preset, sizes, ...).
        source: what to record about the models (backbone, upscaler, device, dtype).
    """
    records = []
    for batch in batches(jobs, batch_size):
        negatives = None if batch[0].negative_prompt is None else [j.negative_prompt for j in batch]
        output = pipe([j.prompt for j in batch], negatives, seed=[j.seed for j in batch], output_type="pt", **settings)
        for i, job in enumerate(batch):
            metadata = image_metadata(job, output, i, settings, source)
            save_image(job.path, output.images[i], overwrite=overwrite, pnginfo=png_text(metadata))
            if save_intermediates and output.low_res_images is not None:
                paths = intermediate_paths(job.path)
                save_image(paths["low_res"], output.low_res_images[i], overwrite=overwrite)
                save_image(paths["upscaled"], output.upscaled_images[i], overwrite=overwrite)
            records.append({"index": job.index, "path": job.path.name, "prompt": job.prompt, "seed": job.seed})
        if on_batch is not None:
            on_batch(batch, output)
    return records


def write_manifest(path: Path, records: list[dict[str, Any]]) -> None:
    """All records as JSON lines, sorted by index, written atomically (replacing an old manifest)."""
    lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in sorted(records, key=lambda r: r["index"]))
    atomic_write(path, lambda tmp: tmp.write_text(lines, encoding="utf-8"), overwrite=True)


def job_record(job: Job) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(job).items()}
