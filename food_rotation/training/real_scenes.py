"""The shipped model's training and held-out sets, built from data/real (scripts/real_data.py) and rendered text.

    python -m food_rotation.training.real_scenes data/real data/rotation_set     (part of `make weights`)
    python -m food_rotation.training.real_scenes data/real data/rotation_set --photos-only     (`make real-data`)

Split by photo and by source: within every source (each GCompris activity, each wallpaper package, each Tux Paint
category) a fixed 30 % of the photos, chosen by a hash of their name, is held out, and near-duplicates (the same
picture in two activities) are held out together, so no photo nor any crop of it is on both sides. What is made:
- real/: the photos themselves (training crops them at random);
- composite/: cut-outs standing on a table in front of a wall, a generated scene or a real photo of the same side;
- text/: menus, labels and receipts in the system's fonts (text is a strong cue, and upright pages were turned);
- scenes/: the generated demo scenes (the gate samples are of that kind);
- held out only, flatlay/: a plate seen from above on a table, food turned at any angle. It has no "up": the
  model should mostly be unsure of it.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from food_rotation.training.make_demo_data import render_scene
from food_rotation.training.photo_sources import end_to_end_source, labelled

HELD_OUT_FRACTION = 0.3
NEAR_DUPLICATE_BITS = 6  # of a 64-bit difference hash
FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
MENU_WORDS = ("Menu", "Soup of the day", "Grilled salmon", "Caesar salad", "Pasta carbonara", "Tiramisu",
              "Espresso", "Cappuccino", "Green tea", "Lemonade", "Burger & fries", "Pizza margherita", "Risotto",
              "Chicken curry", "Fresh bread", "Cheesecake", "Apple pie", "Ingredients:", "Best before", "Net wt 500 g",
              "Nutrition facts", "Calories 250", "Total", "Subtotal", "Thank you!", "Table 12", "VAT 20%",
              "Organic", "Product of Italy", "Store in a cool, dry place", "Breakfast", "Lunch", "Dinner",
              "Today's special", "Vegetarian", "Gluten free", "Sugar 12 g", "Protein 8 g", "Serves 4")


@dataclass(frozen=True)
class Split:
    train: list[Path]
    held_out: list[Path]


def _source(path: Path, root: Path) -> str:
    return str(path.parent.relative_to(root))


def _hash_fraction(key: str) -> float:
    return int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) / 16**12


def difference_hash(path: Path) -> int:
    return image_difference_hash(Image.open(path))


def image_difference_hash(image: Image.Image) -> int:
    """64 bits: is each pixel of a 9x8 grey thumbnail brighter than its right neighbour (near-duplicates differ
    in a few)."""
    small = image.convert("L").resize((9, 8), Image.Resampling.BILINEAR)
    pixels = list(small.getdata())
    return sum(1 << i for i in range(64) if pixels[(i // 8) * 9 + i % 8] > pixels[(i // 8) * 9 + i % 8 + 1])


def split_by_source(paths: Sequence[Path], root: Path, fraction: float = HELD_OUT_FRACTION) -> Split:
    """A fixed `fraction` of every source held out; near-duplicates always land on the held-out side together."""
    by_source: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(paths):
        by_source[_source(path, root)].append(path)
    held: set[Path] = set()
    for members in by_source.values():
        ranked = sorted(members, key=lambda p: _hash_fraction(str(p.relative_to(root))))
        held.update(ranked[:max(1, round(len(ranked) * fraction))] if len(ranked) > 1 else [])
    hashes = {path: difference_hash(path) for path in paths}
    ordered = sorted(paths)
    for i, a in enumerate(ordered):
        for b in ordered[i + 1:]:
            if (hashes[a] ^ hashes[b]).bit_count() <= NEAR_DUPLICATE_BITS and (a in held) != (b in held):
                held.update((a, b))
    return Split([p for p in ordered if p not in held], [p for p in ordered if p in held])


def fonts() -> list[Path]:
    found = sorted(p for folder in FONT_DIRS if folder.is_dir() for p in folder.rglob("*.ttf"))
    if not found:
        raise FileNotFoundError("no .ttf fonts under /usr/share/fonts: apt-get install fonts-dejavu-core")
    return found


def _wall_and_table(rng: random.Random, size: tuple[int, int]) -> tuple[Image.Image, int]:
    width, height = size
    horizon = int(height * rng.uniform(0.3, 0.65))
    img = Image.new("RGB", size)
    draw = ImageDraw.Draw(img)
    wall, table = [tuple(rng.randint(60, 235) for _ in range(3)) for _ in range(2)]
    for y in range(height):
        base = wall if y < horizon else table
        shade = 1.1 - 0.35 * (y / height)  # light from above
        draw.line([(0, y), (width, y)], fill=tuple(min(255, int(c * shade)) for c in base))
    return img.filter(ImageFilter.GaussianBlur(1)), horizon


def _background(rng: random.Random, photos: Sequence[Path], size: tuple[int, int]) -> tuple[Image.Image, int]:
    """A wall and a table, a generated scene, or an upright real photo; and the height where things stand."""
    choice = rng.random()
    if choice < 0.4 or not photos:
        return _wall_and_table(rng, size)
    if choice < 0.6:
        return render_scene(rng.randrange(1 << 30)).resize(size, Image.Resampling.BILINEAR), int(size[1] * 0.5)
    photo = Image.open(rng.choice(photos)).convert("RGB").resize(size, Image.Resampling.BILINEAR)
    return photo, int(size[1] * 0.4)


def composite(rng: random.Random, cutouts: Sequence[Path], photos: Sequence[Path]) -> Image.Image:
    """One to three upright cut-outs standing on the lower part of a background, with a shadow under each."""
    size = rng.choice(((480, 360), (360, 480), (400, 400), (512, 288), (288, 512)))
    img, floor = _background(rng, photos, size)
    shadows = ImageDraw.Draw(img, "RGBA")
    for _ in range(rng.randint(1, 3)):
        cutout = Image.open(rng.choice(cutouts)).convert("RGBA")
        if rng.random() < 0.5:
            cutout = cutout.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        height = int(size[1] * rng.uniform(0.3, 0.75))
        width = max(4, int(cutout.width * height / max(1, cutout.height)))
        if width > size[0] * 0.9:
            width, height = int(size[0] * 0.9), max(4, int(cutout.height * size[0] * 0.9 / max(1, cutout.width)))
        cutout = cutout.resize((width, height), Image.Resampling.LANCZOS)
        base = rng.randint(min(floor + height // 3, size[1] - 1), size[1] - 1)
        left = rng.randint(0, max(0, size[0] - width))
        shadows.ellipse([left, base - height * 0.05, left + width, base + height * 0.06], fill=(0, 0, 0, 70))
        img.paste(cutout, (left, base - height), cutout)
    return img


def text_card(rng: random.Random, font_files: Sequence[Path]) -> Image.Image:
    """A menu, label or receipt: lines of upright text on paper, filling most of the frame."""
    size = rng.choice(((360, 480), (480, 360), (300, 500), (420, 420), (512, 288)))
    paper = tuple(rng.randint(200, 255) for _ in range(3))
    img = Image.new("RGB", size, paper)
    draw = ImageDraw.Draw(img)
    ink = tuple(rng.randint(0, 90) for _ in range(3))
    font_file = rng.choice(font_files)
    y = rng.randint(5, 40)
    align_center = rng.random() < 0.4
    while y < size[1] - 20:
        font = ImageFont.truetype(str(font_file), rng.randint(14, 40))
        line = rng.choice(MENU_WORDS)
        if rng.random() < 0.4:
            line += f"  {rng.randint(1, 39)}.{rng.choice(('00', '50', '90', '95'))}"
        width = draw.textlength(line, font=font)
        x = (size[0] - width) / 2 if align_center else rng.randint(5, 40)
        draw.text((x, y), line, fill=ink, font=font)
        y += int(font.size * rng.uniform(1.2, 1.9))
    return img.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.8)))


def flat_lay(rng: random.Random, food: Sequence[Path]) -> Image.Image:
    """A plate seen from above on a table, its food turned at any angle: no side of it is "up"."""
    side = rng.choice((384, 448, 512))
    table = tuple(rng.randint(60, 200) for _ in range(3))
    img = Image.new("RGB", (side, side), table)
    draw = ImageDraw.Draw(img)
    angle = rng.uniform(0, 180)
    for _ in range(rng.randint(0, 12)):  # grain in a random direction
        offset = rng.uniform(-side, side)
        draw.line([(offset, 0), (offset + side * (angle / 90 - 1), side)], fill=tuple(int(c * 0.85) for c in table),
                  width=2)
    radius = side * rng.uniform(0.3, 0.45)
    centre = side / 2 + rng.uniform(-side * 0.05, side * 0.05)
    draw.ellipse([centre - radius, centre - radius, centre + radius, centre + radius], fill=(238, 238, 232),
                 outline=(205, 205, 200), width=4)
    for _ in range(rng.randint(1, 3)):
        item = Image.open(rng.choice(food)).convert("RGBA")
        item.thumbnail((int(radius), int(radius)))
        item = item.rotate(rng.uniform(0, 360), expand=True, resample=Image.Resampling.BILINEAR)
        x = int(centre - item.width / 2 + rng.uniform(-radius / 3, radius / 3))
        y = int(centre - item.height / 2 + rng.uniform(-radius / 3, radius / 3))
        img.paste(item, (x, y), item)
    return img


def _write_many(folder: Path, count: int, seed: int, make: Callable[[random.Random], Image.Image]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        make(random.Random(seed * 1_000_003 + index)).convert("RGB").save(folder / f"{index:05d}.jpg", quality=90)


def _link_all(paths: Sequence[Path], root: Path, folder: Path) -> None:
    for path in paths:
        target = folder / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(path.resolve())


def link_photos(real: Path, out: Path) -> Split:
    """Only the real photos, linked into out/train/real and out/heldout/real (those with an up) and out/*/no_up
    (those without, photo_sources.NO_UP_LIST): seconds, where the composites, text and scenes take minutes. `make
    real-data` runs this, so the smoke gate's real-photo set (PROXY_GATE_REAL_DIR, out/heldout/real) exists
    wherever the photos were fetched, not only where `make weights` ran. Links are made anew each time. The
    training side holds the end-to-end stage's sources only (photo_sources.END_TO_END_SOURCES); the held-out
    side every source."""
    root = real / "photos"
    photos = split_by_source(sorted(root.rglob("*.jpg")), root)
    end_to_end = [p for p in photos.train if end_to_end_source(p.relative_to(root).as_posix())]
    for side, photo_side in (("train", end_to_end), ("heldout", photos.held_out)):
        kinds = labelled(photo_side, root)
        for kind, members in (("real", kinds.upright), ("no_up", kinds.no_up)):
            shutil.rmtree(out / side / kind, ignore_errors=True)
            _link_all(members, root, out / side / kind)
    return photos


def build(real: Path, out: Path, composites_per_cutout: int = 3, texts: int = 300, scenes: int = 400) -> None:
    photos = link_photos(real, out)
    cutouts = split_by_source(sorted((real / "cutouts").rglob("*.png")), real / "cutouts")
    font_files = fonts()
    for side, photo_side, cutout_side, scale, seed in (("train", photos.train, cutouts.train, 1.0, 1),
                                                         ("heldout", photos.held_out, cutouts.held_out, 0.34, 2)):
        _write_many(out / side / "composite", round(len(cutout_side) * composites_per_cutout * scale), seed,
                    lambda rng, c=cutout_side, p=photo_side: composite(rng, c, p))
        _write_many(out / side / "text", round(texts * scale), seed, lambda rng: text_card(rng, font_files))
        _write_many(out / side / "scenes", round(scenes * scale), seed + 10,
                    lambda rng: render_scene(rng.randrange(1 << 30)))
    food = [p for p in cutouts.held_out if p.parent.name.startswith("food")]
    _write_many(out / "heldout" / "flatlay", 120, 3, lambda rng: flat_lay(rng, food))
    print(f"{out}: train {len(photos.train)} photos + {len(cutouts.train)} cut-outs; held out "
          f"{len(photos.held_out)} photos + {len(cutouts.held_out)} cut-outs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("real", type=Path, help="data/real, from scripts/real_data.py")
    parser.add_argument("out", type=Path)
    parser.add_argument("--photos-only", action="store_true", help="link the real photos' two sides, make nothing")
    args = parser.parse_args(argv)
    if args.photos_only:
        photos = link_photos(args.real, args.out)
        print(f"{args.out}: {len(photos.train)} real photos on the training side, {len(photos.held_out)} held out "
              f"({args.out / 'heldout' / 'real'}: the smoke gate's real photos)")
    else:
        build(args.real, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
