"""The pictures scripts/evaluate.py draws: the confusion matrix and the harm-vs-fix curve (PIL only: matplotlib is
not a runtime dependency)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from PIL import Image, ImageDraw, ImageFont

from food_rotation.rotation_model import CLASSES
from food_rotation.training.calibration import Point

_HARM_TICKS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
_HARM_KNEE = 0.005  # the curve's x axis is linear below this and logarithmic above: low harm is what matters


def draw_matrix(counts: torch.Tensor, title: str) -> Image.Image:
    """Rows: true turn; columns: predicted turn; darker cells hold a larger share of their row."""
    cell, margin = 90, 110
    size = margin + cell * len(CLASSES) + 20
    img = Image.new("RGB", (size, size + 30), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=16)
    draw.text((10, 8), title, fill="black", font=font)
    draw.text((margin, 38), "predicted model_degree", fill="black", font=font)
    draw.text((6, margin - 28), "true", fill="black", font=font)
    for i, degree in enumerate(CLASSES):
        draw.text((margin + i * cell + 30, margin - 24), str(degree), fill="black", font=font)
        draw.text((40, margin + i * cell + 35), str(degree), fill="black", font=font)
        row_total = max(1, int(counts[i].sum()))
        for j in range(len(CLASSES)):
            share = int(counts[i, j]) / row_total
            shade = int(255 * (1 - share))
            box = (margin + j * cell, margin + i * cell, margin + (j + 1) * cell, margin + (i + 1) * cell)
            draw.rectangle(box, fill=(shade, shade, 255), outline="gray")
            draw.text((box[0] + 20, box[1] + 35), str(int(counts[i, j])), fill="black" if share < 0.5 else "white",
                      font=font)
    return img


def _dashed(draw: ImageDraw.ImageDraw, x: float, top: float, bottom: float, fill: str) -> None:
    for y in range(int(top), int(bottom), 10):
        draw.line((x, y, x, min(y + 5, bottom)), fill=fill, width=1)


_PALETTE = ((40, 90, 200), (200, 60, 40), (30, 140, 60), (150, 60, 170), (220, 130, 0), (0, 150, 160),
            (120, 120, 120), (160, 110, 60), (230, 80, 150), (90, 90, 30))


def _axes(draw: ImageDraw.ImageDraw, title: str, seen_harm: float, max_harm: float, size: tuple[int, int],
          ) -> Callable[[float, float], tuple[float, float]]:
    """The grid, the labels and the harm bound of a harm-vs-fix chart; the function that places a point on it.

    The harm axis is linear up to 0.5 % and logarithmic beyond (to the largest harm seen), so the region a
    threshold is chosen in (a percent or so) is wide while the whole curve still fits."""
    width, height = size
    left, top, right, bottom = 90, 60, width - 30, height - 80
    font, small = ImageFont.load_default(size=16), ImageFont.load_default(size=13)
    x_max = max(next(tick for tick in _HARM_TICKS if tick >= min(max(seen_harm, max_harm), 1.0)), 0.01)

    def to_xy(harm: float, fix: float) -> tuple[float, float]:
        share = math.log1p(harm / _HARM_KNEE) / math.log1p(x_max / _HARM_KNEE)
        return left + share * (right - left), bottom - fix * (bottom - top)

    draw.text((left, 12), title, fill="black", font=font)
    for tick in (t for t in _HARM_TICKS if t <= x_max):
        x, _ = to_xy(tick, 0)
        draw.line((x, top, x, bottom), fill=(225, 225, 225))
        draw.text((x, bottom + 6), f"{tick:.1%}".replace(".0%", "%"), fill="black", font=small, anchor="mt")
    for step in range(6):
        _, y = to_xy(0, step / 5)
        draw.line((left, y, right, y), fill=(225, 225, 225))
        draw.text((left - 8, y), f"{step * 20}%", fill="black", font=small, anchor="rm")
    draw.rectangle((left, top, right, bottom), outline="black")
    draw.text(((left + right) / 2, bottom + 30), "harm: share of upright photos turned (log scale above 0.5 %)",
              fill="black", font=font, anchor="mt")
    draw.text((12, top - 28), "fix: share of turned photos made upright", fill="black", font=font)
    bound_x, _ = to_xy(max_harm, 0)
    _dashed(draw, bound_x, top, bottom, "darkorange")
    right_half = bound_x > (left + right) / 2
    draw.text((bound_x - 4 if right_half else bound_x + 4, top + 4), f"harm bound {max_harm:.1%}",
              fill="darkorange", font=small, anchor="ra" if right_half else "la")
    return to_xy


def draw_curve(points: Sequence[Point], marks: Sequence[tuple[str, Point, str]], title: str,
               max_harm: float) -> Image.Image:
    """Fix rate against harm, one point per threshold; `marks` are (label, point, colour) to circle."""
    size = (820, 560)
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    small = ImageFont.load_default(size=13)
    seen = max([p.harm for p in points] + [m[1].harm for m in marks])
    to_xy = _axes(draw, title, seen, max_harm, size)
    left, right, bottom = 90, size[0] - 30, size[1] - 80
    line = [to_xy(p.harm, p.fix) for p in sorted(points, key=lambda p: -p.threshold)]
    if len(line) > 1:
        draw.line(line, fill=_PALETTE[0], width=2)
    for row, (label, point, colour) in enumerate(marks):
        x, y = to_xy(point.harm, point.fix)
        draw.ellipse((x - 6, y - 6, x + 6, y + 6), outline=colour, width=3)
        text = f"{label}: harm {point.harm:.2%}, fix {point.fix:.1%}"
        # Stacked below their point, or above it near the bottom edge, so that labels never overlap.
        ty = y + 10 + 18 * row if y + 10 + 18 * len(marks) < bottom else y - 10 - 18 * (len(marks) - row)
        anchor = "ra" if x > (left + right) / 2 else "la"
        draw.text((x - 10 if anchor == "ra" else x + 10, ty), text, fill=colour, font=small, anchor=anchor)
    return img


def draw_group_curves(curves: dict[str, Sequence[Point]], marked: dict[str, Point], title: str,
                      max_harm: float) -> Image.Image:
    """One harm-vs-fix line per group (its out-of-group answers), each with a dot where the shipped threshold
    puts it, and a legend naming the groups."""
    size = (1000, 640)
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    small = ImageFont.load_default(size=12)
    seen = max(p.harm for points in curves.values() for p in points)
    to_xy = _axes(draw, title, seen, max_harm, (size[0] - 190, size[1]))
    for index, (group, points) in enumerate(curves.items()):
        colour = _PALETTE[index % len(_PALETTE)]
        dashed = index >= len(_PALETTE)
        line = [to_xy(p.harm, p.fix) for p in sorted(points, key=lambda p: -p.threshold)]
        if len(line) > 1:
            draw.line(line, fill=colour, width=1 if dashed else 2)
        if group in marked:
            x, y = to_xy(marked[group].harm, marked[group].fix)
            draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=colour)
        draw.line((size[0] - 180, 70 + 18 * index, size[0] - 160, 70 + 18 * index), fill=colour, width=1 if dashed
                  else 3)
        draw.text((size[0] - 155, 70 + 18 * index), group, fill="black", font=small, anchor="lm")
    return img
