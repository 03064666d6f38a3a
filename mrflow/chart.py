"""A stacked per-stage bar chart drawn with PIL (no plotting dependency for one figure)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from mrflow.io import save_image

PALETTE = [
    (76, 114, 176),
    (221, 132, 82),
    (85, 168, 104),
    (196, 78, 82),
    (129, 114, 179),
    (147, 120, 96),
    (218, 139, 195),
    (140, 140, 140),
    (204, 185, 116),
    (100, 181, 205),
]


def stacked_bars(
    rows: list[tuple[str, dict[str, float]]], title: str, path: str | Path, *, overwrite: bool = False
) -> Path:
    """Horizontal stacked bars, one row per label, one colour per stage (seconds).

    Args:
        rows: ``(label, {stage: seconds})`` in display order; stages with 0 s are skipped.
        title: drawn above the bars.
        path: PNG destination, written atomically.
    """
    stages = [s for s in dict.fromkeys(k for _, parts in rows for k in parts) if any(p.get(s, 0) > 0 for _, p in rows)]
    colours = {stage: PALETTE[i % len(PALETTE)] for i, stage in enumerate(stages)}
    font = ImageFont.load_default()
    width, left, right, bar, gap, top = 900, 150, 110, 26, 12, 40
    legend_rows = (len(stages) + 3) // 4
    height = top + len(rows) * (bar + gap) + 30 + legend_rows * 20 + 10
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 10), title, fill="black", font=font)
    longest = max((sum(parts.values()) for _, parts in rows), default=0.0) or 1.0
    scale = (width - left - right) / longest
    for i, (label, parts) in enumerate(rows):
        y = top + i * (bar + gap)
        draw.text((10, y + 7), label[:22], fill="black", font=font)
        x = float(left)
        for stage in stages:
            w = parts.get(stage, 0.0) * scale
            if w > 0:
                draw.rectangle([x, y, x + w, y + bar], fill=colours[stage])
                x += w
        draw.text((x + 6, y + 7), f"{sum(parts.values()):.3g} s", fill="black", font=font)
    y0 = top + len(rows) * (bar + gap) + 20
    for i, stage in enumerate(stages):
        x, y = 10 + (i % 4) * 220, y0 + (i // 4) * 20
        draw.rectangle([x, y, x + 12, y + 12], fill=colours[stage])
        draw.text((x + 18, y), stage, fill="black", font=font)
    return save_image(path, image, overwrite=overwrite)
