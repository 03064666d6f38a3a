"""``mrflow generate``: text to image files, one process or several (``accelerate launch``)."""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mrflow.cli_args import add_model_arguments, nonnegative_float, positive_int, unit_interval

if TYPE_CHECKING:  # the generation modules import torch: load them when the command runs
    from mrflow.generate import Job, PromptSpec

SETTING_KEYS = (
    "preset",
    "height",
    "width",
    "guidance_scale",
    "low_res_scale",
    "low_res_steps",
    "refine_steps",
    "refine_sigma",
    "num_inference_steps",
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate",
        help="generate images from text prompts",
        description="Generate images by staged sampling (or natively, with --preset native). Each PNG stores "
        "its parameters, so --from-png reproduces it. Existing files are never overwritten without --overwrite.",
    )
    p.add_argument("prompts", nargs="*", metavar="PROMPT", help="one or more prompts")
    p.add_argument(
        "--prompts-file",
        type=Path,
        help='text file (one prompt per line) or JSONL ({"prompt", "negative_prompt"?, "seed"?} per line)',
    )
    p.add_argument("--from-png", type=Path, metavar="FILE", help="reproduce an image from the parameters in its PNG")
    add_model_arguments(p)
    g = p.add_argument_group("sampling")
    g.add_argument("--preset", default=None, help="12plus1 (default), 20plus1, 12plus1-text or native")
    g.add_argument("--height", type=positive_int, help="target height in pixels (default: the backbone's)")
    g.add_argument("--width", type=positive_int, help="target width in pixels (default: the backbone's)")
    g.add_argument("--low-res-scale", type=unit_interval, help="low-res side / target side, e.g. 0.5 for ×2 SR")
    g.add_argument("--low-res-steps", type=positive_int, help="Euler steps at low resolution")
    g.add_argument("--refine-steps", type=positive_int, help="Euler steps of the refinement")
    g.add_argument("--refine-sigma", type=unit_interval, help="true noise level injected before refining, in (0, 1)")
    g.add_argument("--steps", type=positive_int, help="steps of native sampling (--preset native)")
    g.add_argument("--guidance", type=nonnegative_float, help="guidance scale (default: the backbone's)")
    g.add_argument("--negative-prompt", help="negative prompt for backbones with true CFG")
    g.add_argument("--seed", type=int, help="seed of the first image; image i uses seed + i (default: random)")
    g.add_argument("--num-images", type=positive_int, default=1, help="images per prompt (default 1)")
    g.add_argument("--batch-size", type=positive_int, default=1, help="images per pipeline call (default 1)")
    o = p.add_argument_group("output")
    o.add_argument("--out", type=Path, default=Path("outputs"), help="output directory (default ./outputs)")
    o.add_argument("--overwrite", action="store_true", help="replace existing files")
    o.add_argument("--resume", action="store_true", help="skip images whose files already exist")
    o.add_argument("--save-intermediates", action="store_true", help="also write the low-res and upscaled images")
    o.add_argument("--quiet", action="store_true", help="no progress bars and no summary")
    p.set_defaults(func=run)


def _fail(parser_name: str, message: str) -> int:
    print(f"mrflow {parser_name}: error: {message}", file=sys.stderr)
    return 2


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    values = {
        "preset": args.preset,  # None: the backbone's default preset
        "height": args.height,
        "width": args.width,
        "guidance_scale": args.guidance,
        "low_res_scale": args.low_res_scale,
        "low_res_steps": args.low_res_steps,
        "refine_steps": args.refine_steps,
        "refine_sigma": args.refine_sigma,
        "num_inference_steps": args.steps,
    }
    return {k: v for k, v in values.items() if v is not None}


def _specs_and_settings(args: argparse.Namespace) -> tuple[list[PromptSpec], dict[str, Any]]:
    """Prompts and pipeline settings from the arguments, or from a PNG's metadata."""
    from mrflow.generate import PromptSpec, read_png_metadata, read_prompt_file

    if args.from_png is not None:
        if args.prompts or args.prompts_file:
            raise ValueError("--from-png cannot be combined with prompts or --prompts-file")
        meta = read_png_metadata(args.from_png)
        settings = {k: v for k, v in meta["settings"].items() if k in SETTING_KEYS}
        recorded = meta.get("config", {}).get("guidance_scale")
        if settings.get("guidance_scale") is None and recorded is not None:
            settings["guidance_scale"] = recorded  # the scale used, even if it was a default changed since
        for key in ("backbone", "upscaler", "dtype"):
            if getattr(args, key) is None:
                setattr(args, key, meta.get(key))
        args.num_images = 1
        return [PromptSpec(meta["prompt"], meta.get("negative_prompt"), meta["seed"])], settings
    if args.prompts and args.prompts_file:
        raise ValueError("give prompts as arguments or with --prompts-file, not both")
    if args.prompts_file:
        specs = read_prompt_file(args.prompts_file)
    elif args.prompts:
        specs = [PromptSpec(p, None, None) for p in args.prompts]
    else:
        raise ValueError("no prompt given (pass PROMPT arguments, --prompts-file or --from-png)")
    if any(not s.prompt.strip() for s in specs):
        raise ValueError("argument PROMPT: prompts must not be empty")
    if args.negative_prompt is not None:
        specs = [PromptSpec(s.prompt, s.negative_prompt or args.negative_prompt, s.seed) for s in specs]
    return specs, _settings(args)


def _check_settings(settings: dict[str, Any]) -> None:
    """Validate what can be checked without a model: the preset name and which knobs apply to it."""
    from mrflow.config import NativeConfig, get_preset, known_preset_names, presets

    if "preset" not in settings:  # the backbone's default preset is a staged one
        if "num_inference_steps" in settings:
            raise ValueError("--steps applies to --preset native only (use --low-res-steps / --refine-steps)")
        return
    name = settings["preset"]
    if name not in known_preset_names():
        raise ValueError(f"argument --preset: unknown preset {name!r}; known: {known_preset_names()}")
    if name not in presets():  # a backbone's own preset: checked once the backbone is loaded
        return
    preset = get_preset(name)
    staged_only = {"low_res_scale", "low_res_steps", "refine_steps", "refine_sigma"} & set(settings)
    if isinstance(preset, NativeConfig) and staged_only:
        raise ValueError(f"{sorted(staged_only)} do not apply to --preset native")
    if not isinstance(preset, NativeConfig) and "num_inference_steps" in settings:
        raise ValueError("--steps applies to --preset native only (use --low-res-steps / --refine-steps)")


def _select_jobs(args: argparse.Namespace, jobs: list[Job]) -> list[Job]:
    """Refuse to clobber (before any model loads), or skip existing files with --resume."""
    from mrflow.generate import intermediate_paths

    if args.overwrite and args.resume:
        raise ValueError("--overwrite and --resume exclude each other")
    if args.overwrite:
        return jobs
    pending = []
    for job in jobs:
        paths = [job.path, *(intermediate_paths(job.path).values() if args.save_intermediates else [])]
        existing = [p for p in paths if p.exists()]
        if existing and not args.resume:
            raise ValueError(f"{existing[0]} exists (pass --overwrite to replace or --resume to skip)")
        if not (args.resume and job.path.exists()):
            pending.append(job)
    return pending


def run(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    from mrflow.generate import plan_jobs

    try:
        specs, settings = _specs_and_settings(args)
        _check_settings(settings)
        if args.seed is not None and not 0 <= args.seed < 2**62:
            raise ValueError(f"argument --seed: must be in [0, 2**62), got {args.seed}")
        state = PartialState(cpu=_wants_cpu(args.device))
        seed = _shared_seed(args.seed, state)
        jobs = _select_jobs(args, plan_jobs(specs, args.num_images, seed, args.out))
        args.out.mkdir(parents=True, exist_ok=True)
    except (ValueError, OSError) as exc:
        return _fail("generate", str(exc))
    mine = jobs[state.process_index :: state.num_processes]
    try:
        records, outputs = _generate(args, mine, settings, state)
    except ValueError as exc:  # the pipeline's own validation (sizes for this backbone, ...)
        return _fail("generate", str(exc))
    _gather_manifest(args.out, records, state)
    if not args.quiet and state.is_main_process:
        print(_summary(settings.get("preset", "default preset"), outputs, len(jobs), len(records), args.out))
    return 0


def _wants_cpu(device: str | None) -> bool:
    """Processes run on the CPU when asked to, or when there is no CUDA device (gloo backend)."""
    import torch

    return (device is not None and device.startswith("cpu")) or not torch.cuda.is_available()


def _shared_seed(seed: int | None, state: Any) -> int:
    """The user's seed, or one random seed agreed by every process."""
    if seed is not None:
        return seed
    value = [secrets.randbits(62)]
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(value)
    return value[0]


def _generate(args: argparse.Namespace, jobs: list, settings: dict[str, Any], state: Any) -> tuple[list, list]:
    from mrflow.cli_args import load_pipeline
    from mrflow.generate import run_jobs

    pipe, source = load_pipeline(args, state)
    if args.quiet:
        pipe.set_progress_bar_config(disable=True)
    outputs: list = []
    records = run_jobs(
        pipe,
        jobs,
        settings,
        source,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
        save_intermediates=args.save_intermediates,
        on_batch=lambda batch, output: outputs.append(output),
    )
    for record in records:
        record["process"] = state.process_index
    return records, outputs


def _gather_manifest(out: Path, records: list, state: Any) -> None:
    """Every process's records end up in one ``manifest.jsonl`` written by the main process."""
    from mrflow.generate import write_manifest

    if state.num_processes > 1:
        from accelerate.utils import gather_object

        records = gather_object(records)
    if state.is_main_process:
        manifest = out / "manifest.jsonl"
        previous = []
        if manifest.exists():  # --resume keeps the records of earlier runs
            previous = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line]
        merged = {r["path"]: r for r in previous + list(records)}
        write_manifest(manifest, list(merged.values()))
    state.wait_for_everyone()


def _summary(preset: str, outputs: list, planned: int, written: int, out: Path) -> str:
    if not outputs:
        return f"nothing to do: all {planned} images exist in {out}"
    stages = [k for k in outputs[0].stage_seconds if any(o.stage_seconds[k] > 0 for o in outputs)]
    per_stage = " | ".join(f"{k} {sum(o.stage_seconds[k] for o in outputs):.2f}s" for k in stages)
    total = sum(o.total_seconds for o in outputs)
    per_image = statistics.median(o.total_seconds / len(o.seeds) for o in outputs)
    return f"{written} image(s) → {out} [{preset}] in {total:.2f}s (median {per_image:.2f}s/image): {per_stage}"
