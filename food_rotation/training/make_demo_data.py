"""Generate upright synthetic food scenes: the demo training set (no photo datasets can be downloaded here).

Every scene carries the cues that tell "up" in a real table-top photo: a wall above a table edge, light from
above (bright top, shaded undersides, shadows cast downwards), objects resting on the table (plates, bowls,
cups, glasses, bottles, cutlery) that grow larger nearer the camera, and upright lines of text. Half the scenes
are portrait and half landscape, so the aspect ratio alone says nothing about the rotation.

    python -m food_rotation.training.make_demo_data data/demo --count 2400 --seed 0
"""

from __future__ import annotations

import argparse
import random
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

SIZES = ((384, 288), (288, 384), (352, 352), (400, 240), (240, 400), (320, 240), (240, 320))
WORDS = ("menu", "soup", "pasta", "salad", "daily", "special", "coffee", "tea", "bread", "cake", "rice",
         "curry", "fresh", "fish", "grill", "wine", "lunch", "12.50", "9.90", "open", "chef", "dessert")
SCALE = 2  # draw at twice the size, then downsample: cheap anti-aliasing


def _jitter(rng: random.Random, color: tuple[int, int, int], amount: int = 25) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in color)  # type: ignore[return-value]


def _shade(color: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(max(0, min(255, int(c * factor))) for c in color)  # type: ignore[return-value]


def _random_color(rng: random.Random, lo: int = 40, hi: int = 230) -> tuple[int, int, int]:
    return (rng.randint(lo, hi), rng.randint(lo, hi), rng.randint(lo, hi))


def _vertical_gradient(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int],
                       top: tuple[int, int, int], bottom: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box
    span = max(1, y1 - y0)
    for y in range(y0, y1):
        t = (y - y0) / span
        draw.line([(x0, y), (x1, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))


def _shadow(draw: ImageDraw.ImageDraw, cx: float, base_y: float, w: float, strength: int) -> None:
    """A soft dark ellipse under and below an object: light comes from above."""
    draw.ellipse([cx - w * 0.55, base_y - w * 0.06, cx + w * 0.6, base_y + w * 0.16], fill=(0, 0, 0, strength))


def _plate(draw, rng, cx, base_y, w):
    h = w * rng.uniform(0.28, 0.4)
    _shadow(draw, cx, base_y, w, 90)
    rim = _jitter(rng, (235, 235, 228), 20)
    draw.ellipse([cx - w / 2, base_y - h, cx + w / 2, base_y], fill=_shade(rim, 0.8))  # plate edge, darker below
    draw.ellipse([cx - w / 2, base_y - h - w * 0.02, cx + w / 2, base_y - w * 0.02], fill=rim)
    draw.ellipse([cx - w * 0.33, base_y - h * 0.83, cx + w * 0.33, base_y - h * 0.2], fill=_shade(rim, 0.93))
    for _ in range(rng.randint(1, 4)):  # food rests on the plate and is lit from above
        fw, fh = w * rng.uniform(0.1, 0.25), h * rng.uniform(0.2, 0.45)
        fx, fy = cx + rng.uniform(-w * 0.2, w * 0.2), base_y - h * rng.uniform(0.35, 0.6)
        food = _random_color(rng, 60, 220)
        draw.ellipse([fx - fw / 2, fy - fh, fx + fw / 2, fy + fh * 0.2], fill=_shade(food, 0.7))
        draw.ellipse([fx - fw / 2, fy - fh * 1.25, fx + fw / 2, fy - fh * 0.1], fill=food)
        draw.ellipse([fx - fw / 5, fy - fh * 1.15, fx + fw / 6, fy - fh * 0.8], fill=_shade(food, 1.25))


def _bowl(draw, rng, cx, base_y, w):
    h = w * rng.uniform(0.45, 0.65)
    _shadow(draw, cx, base_y, w * 0.9, 100)
    body = _random_color(rng, 60, 230)
    top_y = base_y - h
    draw.chord([cx - w / 2, top_y - h * 0.9, cx + w / 2, base_y], 0, 180, fill=_shade(body, 0.75))
    draw.chord([cx - w / 2, top_y - h * 0.9, cx + w / 2, base_y - h * 0.25], 0, 180, fill=body)
    draw.ellipse([cx - w / 2, top_y - h * 0.22, cx + w / 2, top_y + h * 0.22], fill=_shade(body, 1.15))
    draw.ellipse([cx - w * 0.44, top_y - h * 0.16, cx + w * 0.44, top_y + h * 0.18], fill=_random_color(rng, 80, 220))


def _cup(draw, rng, cx, base_y, w):
    h = w * rng.uniform(0.8, 1.1)
    _shadow(draw, cx, base_y, w, 110)
    body = _random_color(rng, 80, 240)
    draw.arc([cx + w * 0.3, base_y - h * 0.8, cx + w * 0.85, base_y - h * 0.3], 270, 90, fill=_shade(body, 0.8),
             width=max(2, int(w * 0.1)))
    draw.polygon([(cx - w / 2, base_y - h), (cx + w / 2, base_y - h), (cx + w * 0.4, base_y),
                  (cx - w * 0.4, base_y)], fill=body)
    draw.polygon([(cx - w * 0.45, base_y - h * 0.45), (cx + w * 0.45, base_y - h * 0.45), (cx + w * 0.4, base_y),
                  (cx - w * 0.4, base_y)], fill=_shade(body, 0.78))
    draw.ellipse([cx - w / 2, base_y - h - w * 0.14, cx + w / 2, base_y - h + w * 0.14], fill=_shade(body, 1.2))
    draw.ellipse([cx - w * 0.42, base_y - h - w * 0.1, cx + w * 0.42, base_y - h + w * 0.1], fill=(90, 55, 30))


def _glass(draw, rng, cx, base_y, w):
    h = w * rng.uniform(1.4, 2.2)
    _shadow(draw, cx, base_y, w, 60)
    level = base_y - h * rng.uniform(0.3, 0.8)
    liquid = _random_color(rng, 40, 230)
    draw.rectangle([cx - w / 2, base_y - h, cx + w / 2, base_y], fill=(215, 230, 240, 90))
    draw.rectangle([cx - w / 2, level, cx + w / 2, base_y], fill=(*liquid, 170))
    draw.ellipse([cx - w / 2, level - w * 0.12, cx + w / 2, level + w * 0.12], fill=(*_shade(liquid, 1.2), 190))
    draw.ellipse([cx - w / 2, base_y - h - w * 0.12, cx + w / 2, base_y - h + w * 0.12], outline=(250, 250, 250, 200),
                 width=2)
    draw.line([(cx - w * 0.3, base_y - h * 0.9), (cx - w * 0.3, base_y - h * 0.2)], fill=(255, 255, 255, 150), width=3)


def _bottle(draw, rng, cx, base_y, w):
    h = w * rng.uniform(2.2, 3.2)
    _shadow(draw, cx, base_y, w, 110)
    body = _random_color(rng, 20, 160)
    shoulder = base_y - h * 0.62
    draw.rectangle([cx - w / 2, shoulder, cx + w / 2, base_y], fill=body)
    draw.polygon([(cx - w / 2, shoulder), (cx + w / 2, shoulder), (cx + w * 0.16, shoulder - h * 0.15),
                  (cx - w * 0.16, shoulder - h * 0.15)], fill=body)
    draw.rectangle([cx - w * 0.16, base_y - h, cx + w * 0.16, shoulder - h * 0.14], fill=body)
    draw.rectangle([cx - w * 0.18, base_y - h - w * 0.1, cx + w * 0.18, base_y - h + w * 0.15],
                   fill=_random_color(rng, 120, 240))
    draw.rectangle([cx - w * 0.42, shoulder + h * 0.15, cx + w * 0.42, shoulder + h * 0.38],
                   fill=_jitter(rng, (235, 230, 210)))
    draw.line([(cx - w * 0.3, shoulder), (cx - w * 0.3, base_y - h * 0.05)], fill=_shade(body, 1.6), width=3)


def _cutlery(draw, rng, cx, base_y, w):
    """Fork or knife lying on the table, pointing away from the camera: it narrows upwards."""
    length = w * rng.uniform(1.2, 1.8)
    metal = _jitter(rng, (190, 190, 200), 15)
    skew = rng.uniform(-0.25, 0.25) * length
    draw.line([(cx + 3, base_y + 3), (cx + skew + 3, base_y - length + 3)], fill=(0, 0, 0, 80),
              width=max(3, int(w / 9)))
    draw.line([(cx, base_y), (cx + skew, base_y - length)], fill=metal, width=max(3, int(w / 10)))
    tip_x, tip_y = cx + skew, base_y - length
    for dx in (-w * 0.06, 0, w * 0.06):
        draw.line([(tip_x + dx, tip_y), (tip_x + dx * 1.2, tip_y - length * 0.18)], fill=metal, width=2)


OBJECTS = (_plate, _plate, _bowl, _cup, _glass, _bottle, _cutlery)


def _text_block(draw, rng, x, y, width, font_size):
    font = ImageFont.load_default(size=font_size)
    ink = _random_color(rng, 0, 90)
    for line in range(rng.randint(2, 5)):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))
        draw.text((x, y + line * font_size * 1.35), words, fill=ink, font=font)
        if x + draw.textlength(words, font=font) > x + width:
            break


def render_scene(seed: int) -> Image.Image:
    """One upright scene, fully determined by its seed."""
    rng = random.Random(seed)
    width, height = rng.choice(SIZES)
    big_w, big_h = width * SCALE, height * SCALE
    horizon = int(big_h * rng.uniform(0.22, 0.6))
    img = Image.new("RGB", (big_w, big_h))
    draw = ImageDraw.Draw(img, "RGBA")
    wall = _random_color(rng, 90, 235)
    _vertical_gradient(draw, (0, 0, big_w, horizon), _shade(wall, 1.15), _shade(wall, 0.8))
    if rng.random() < 0.5:  # a window or a lamp: the bright source sits above
        wx = rng.uniform(0, big_w * 0.7)
        draw.rectangle([wx, horizon * 0.05, wx + big_w * rng.uniform(0.15, 0.3), horizon * 0.6], fill=(250, 250, 235))
    if rng.random() < 0.6:  # a board or a card with upright text on the wall
        bx = rng.uniform(0, big_w * 0.5)
        by = rng.uniform(0, max(1, horizon * 0.4))
        board_w = big_w * rng.uniform(0.3, 0.5)
        draw.rectangle([bx, by, bx + board_w, by + horizon * 0.55], fill=_jitter(rng, (235, 228, 205)))
        _text_block(draw, rng, bx + 8, by + 8, board_w - 16, rng.randint(14, 24) * SCALE // 2)
    table = _random_color(rng, 60, 210)
    _vertical_gradient(draw, (0, horizon, big_w, big_h), _shade(table, 1.05), _shade(table, 0.7))
    for _ in range(rng.randint(0, 8)):  # wood grain or cloth stripes run along the table edge
        y = rng.uniform(horizon, big_h)
        draw.line([(0, y), (big_w, y + rng.uniform(-6, 6))], fill=(*_shade(table, 0.85), 120), width=2)
    draw.line([(0, horizon), (big_w, horizon)], fill=_shade(table, 1.3), width=max(2, SCALE * 2))
    if rng.random() < 0.4:  # the table's front edge near the camera
        edge = int(big_h * rng.uniform(0.86, 0.96))
        draw.rectangle([0, edge, big_w, big_h], fill=_shade(table, 0.45))
    placements = []
    for _ in range(rng.randint(2, 6)):
        depth = rng.uniform(0.1, 1.0)  # 0: far (near the horizon), 1: near the camera
        base_y = horizon + depth * (big_h - horizon) * 0.9 + 6
        size = big_w * (0.08 + 0.2 * depth) * rng.uniform(0.8, 1.2)
        placements.append((base_y, rng.uniform(0.1, 0.9) * big_w, size, rng.choice(OBJECTS)))
    for base_y, cx, size, draw_object in sorted(placements):  # far objects first: near ones cover them
        draw_object(draw, rng, cx, base_y, size)
    if rng.random() < 0.35:  # a menu card lying on the table, text facing the camera
        cw, ch = big_w * 0.25, (big_h - horizon) * 0.3
        cx0, cy0 = rng.uniform(0, big_w - cw), rng.uniform(horizon + 10, big_h - ch)
        draw.rectangle([cx0, cy0, cx0 + cw, cy0 + ch], fill=(245, 243, 235))
        _text_block(draw, rng, cx0 + 6, cy0 + 6, cw - 12, rng.randint(10, 16) * SCALE // 2)
    light = Image.linear_gradient("L").resize((big_w, big_h))  # overall fall-off away from the light above
    img = Image.composite(img, Image.new("RGB", img.size, (0, 0, 0)), light.point(lambda v: 255 - v // 4))
    img = img.resize((width, height), Image.Resampling.LANCZOS)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    return img


def _write(args: tuple[Path, int, int]) -> None:
    out_dir, index, seed = args
    render_scene(seed).save(out_dir / f"scene_{index:05d}.jpg", quality=random.Random(seed).randint(70, 95))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--count", type=int, default=2400)
    parser.add_argument("--seed", type=int, default=0, help="scenes of different seeds never coincide")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    write_scenes(args.out_dir, args.count, args.seed, args.jobs)
    print(f"wrote {args.count} upright scenes to {args.out_dir}")
    return 0


def write_scenes(out_dir: Path, count: int, seed: int, jobs: int = 2) -> None:
    """`count` upright scenes as JPEGs in `out_dir`; the same seed writes the same scenes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    work = [(out_dir, i, seed * 1_000_003 + i) for i in range(count)]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(_write, work, chunksize=32))


if __name__ == "__main__":
    sys.exit(main())
