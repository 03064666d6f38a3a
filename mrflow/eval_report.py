"""Human-readable benchmark outputs: the Markdown tables and the example grid."""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from mrflow.output import STAGES
from mrflow.scenes.detect import ATTRIBUTES

TEXT_COLUMN = 200  # width of the prompt column in the grid, pixels
LABEL_HEIGHT = 18  # column titles above the grid, pixels


def _guidance(report: dict[str, Any]) -> str:
    """The guidance scale of the run: the one passed, else the one every output recorded."""
    scale = report["benchmark"].get("guidance_scale")
    if scale is None:
        used = {entry["config"].get("guidance_scale") for entry in report["presets"].values()}
        scale = used.pop() if len(used) == 1 else None
    return "the backbone's default" if scale is None else f"{scale:g}"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def markdown_report(report: dict[str, Any]) -> str:
    """Two tables: accuracy (%) and time per preset, then accuracy by prompt kind."""
    bench = report["benchmark"]
    attributes = [a for a in ATTRIBUTES if any(a in p["accuracy"] for p in report["presets"].values())]
    header = [
        "preset",
        "overall",
        "attribute mean",
        *attributes,
        "stage-1 overall",
        "median s/image",
        "speedup",
    ]
    lines = [
        "# Prompt-adherence benchmark",
        "",
        f"{bench['num_prompts']} prompts ({', '.join(f'{n} {k}' for k, n in bench['kinds'].items())}) × "
        f"{len(bench['seeds'])} seed(s) at {bench['size'][0]}×{bench['size'][1]}, "
        f"batch {bench['batch_size']}, guidance {_guidance(report)}; "
        f"speedup against `{bench['baseline']}` in the same run. Accuracy in %; overall = every attribute "
        "of the prompt right.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for name, entry in report["presets"].items():
        acc = entry["accuracy"]
        speedup = entry.get("speedup")
        cells = [
            f"`{name}`",
            _percent(acc["overall"]),
            _percent(acc["attribute_mean"]),
            *(_percent(acc.get(a)) for a in attributes),
            _percent(acc.get("low_res_overall")),
            f"{entry['median_seconds_per_image']:.3f}",
            "–" if speedup is None else f"{speedup:.2f}×",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    kinds = sorted({k for entry in report["presets"].values() for k in entry["accuracy"]["by_kind"]})
    lines += ["", "Overall accuracy by prompt kind (%):", "", "| preset | " + " | ".join(kinds) + " |"]
    lines.append("|" + "---|" * (len(kinds) + 1))
    for name, entry in report["presets"].items():
        by_kind = entry["accuracy"]["by_kind"]
        lines.append(f"| `{name}` | " + " | ".join(_percent(by_kind.get(k)) for k in kinds) + " |")
    return "\n".join(lines + _stage_table(report)) + "\n"


def _stage_table(report: dict[str, Any]) -> list[str]:
    """Wall seconds per stage, summed over the run (stages no preset used are left out)."""
    entries = report["presets"]
    stages = [s for s in STAGES if any(e["stage_seconds"].get(s, 0.0) > 0 for e in entries.values())]
    if not stages:
        return []
    lines = ["", "Seconds per stage, summed over all images:", "", "| preset | " + " | ".join(stages) + " | total |"]
    lines.append("|" + "---|" * (len(stages) + 2))
    for name, entry in entries.items():
        cells = [f"{entry['stage_seconds'].get(s, 0.0):.2f}" for s in stages]
        lines.append(f"| `{name}` | " + " | ".join(cells) + f" | {entry['total_seconds']:.2f} |")
    return lines


def _cells(images: torch.Tensor, cell: int) -> np.ndarray:
    """(N, 3, h, w) in [0, 1] → (N, cell, cell, 3) uint8, nearest-neighbour so low-res pixels stay visible."""
    resized = F.interpolate(images.float(), size=(cell, cell), mode="nearest")
    return (resized.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def grid_columns(examples: dict[str, dict[str, torch.Tensor]]) -> list[tuple[str, torch.Tensor]]:
    """Titled columns: every native preset's images, then low-res, upscaled and refined of the first
    staged preset (one with low-res images)."""
    columns = [(f"{name}", ex["images"]) for name, ex in examples.items() if "low_res_images" not in ex]
    staged = [(name, ex) for name, ex in examples.items() if "low_res_images" in ex]
    if staged:
        name, ex = staged[0]
        columns.append((f"{name} low-res", ex["low_res_images"]))
        if "upscaled_images" in ex:
            columns.append((f"{name} upscaled", ex["upscaled_images"]))
        columns.append((f"{name} refined", ex["images"]))
    return columns


def make_grid(prompts: list[str], examples: dict[str, dict[str, torch.Tensor]], cell: int = 192) -> Image.Image:
    """A grid with one row per prompt: prompt text | native | low-res | upscaled | refined."""
    columns = grid_columns(examples)
    rows = min([len(prompts), *(len(images) for _, images in columns)])
    width, height = TEXT_COLUMN + cell * len(columns), LABEL_HEIGHT + cell * rows
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    draw.text((4, 3), "prompt", fill=(0, 0, 0), font=font)
    for index, (title, images) in enumerate(columns):
        left = TEXT_COLUMN + index * cell
        draw.text((left + 4, 3), title, fill=(0, 0, 0), font=font)
        for row, tile in enumerate(_cells(images[:rows], cell)):
            canvas.paste(Image.fromarray(tile), (left, LABEL_HEIGHT + row * cell))
    for row, prompt in enumerate(prompts[:rows]):
        text = "\n".join(textwrap.wrap(prompt, width=30))
        draw.multiline_text((4, LABEL_HEIGHT + row * cell + 4), text, fill=(0, 0, 0), font=font, spacing=3)
    return canvas
