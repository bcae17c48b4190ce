"""Real upright photos from Debian packages: the training and held-out photos of the shipped model.

    python scripts/real_data.py data/real          (= make real-data; idempotent, about 30 s)

Downloads four packages with `apt-get download` (no root needed) and extracts only their photographs:
- gcompris-qt-data: animals, monuments, fish, tools, objects, renewable energy (WebP inside Qt .rcc archives);
- mate-backgrounds, plasma-workspace-wallpapers: nature and landscape wallpapers (the photographic ones only);
- tuxpaint-stamps-default: photo cut-outs with transparent backgrounds (food, animals, plants, objects), which
  food_rotation/training/real_scenes.py composites onto tables and backgrounds.
Drawings, cartoons, paintings, symbols and abstract wallpapers are left out: they have no reliable "up".

Photos are stored downscaled (longest side 768 px; the model sees 224) as data/real/photos/<source>/..., cut-outs
as data/real/cutouts/<category>/...; MANIFEST.json records each package's version and sha256 and each extracted
file's sha256. The photos are under their packages' licences (GPL / CC, see each package's copyright file): they
are not committed, only the weights trained on them. No other real photos may be used for training: other
packages' photos are kept for independent evaluation.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from food_rotation.training.qt_resources import read_resources

PACKAGES = {  # name -> the version the shipped weights were trained on
    "gcompris-qt-data": "3.1-2",
    "mate-backgrounds": "1.26.0-1",
    "plasma-workspace-wallpapers": "4:5.27.5-2",
    "tuxpaint-stamps-default": "2022.06.04-1",
}
GCOMPRIS_PHOTO_FOLDERS = (  # activities whose pictures are photographs
    "categorization/resource/images/fishes", "categorization/resource/images/monuments",
    "categorization/resource/images/others", "categorization/resource/images/renewable",
    "categorization/resource/images/tools", "erase/resource", "explore_farm_animals/resource/animals",
    "explore_monuments/resource", "explore_world_animals/resource/animals", "explore_world_music/resource/music",
)
MATE_PHOTOS = ("Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm",
               "TwoWings", "Wood", "YellowFlower")
PLASMA_PHOTOS = ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey",
                 "Kite", "OneStandsOut", "Path", "summer_1am")
TUXPAINT_CATEGORIES = ("animals", "clothes", "food", "hobbies", "household", "medical", "military", "people",
                       "plants", "seasonal", "sports", "town/houses", "town/monuments", "vehicles")
PHOTO_SIDE = 768
CUTOUT_SIDE = 512


@dataclass(frozen=True)
class Extracted:
    relative: str  # where it is stored, below the output folder
    image: Image.Image


def _apt_download(spec: str, folder: Path) -> bool:
    return subprocess.run(["apt-get", "download", spec], cwd=folder, check=False,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def download(packages: dict[str, str], folder: Path) -> dict[str, Path]:
    """The .deb of each package, downloaded once: the pinned version, else the one the archive has now.

    A fresh machine may have no package lists yet: as root, they are fetched once (apt-get update) and it retries.
    """
    folder.mkdir(parents=True, exist_ok=True)
    debs: dict[str, Path] = {}
    updated = False
    for name, version in packages.items():
        while not sorted(folder.glob(f"{name}_*.deb")):
            if _apt_download(f"{name}={version}", folder):
                break
            if _apt_download(name, folder):
                print(f"real-data: {name}={version} is gone from the archive; took its current version",
                      file=sys.stderr)
                break
            if updated or os.geteuid() != 0:
                raise SystemExit(f"real-data: apt-get download {name} failed: run apt-get update (as root) first")
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            updated = True
        debs[name] = sorted(folder.glob(f"{name}_*.deb"))[-1]
    return debs


def unpack(deb: Path, into: Path) -> Path:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(into)], check=True)
    return into


def gcompris_photos(root: Path) -> Iterator[Extracted]:
    for archive in sorted(root.rglob("*.rcc")):
        for path, blob in read_resources(archive.read_bytes()):
            folder, _, name = path.rpartition("/")
            activity = folder.removeprefix("/gcompris/src/activities/")
            if path.endswith(".webp") and activity.startswith(GCOMPRIS_PHOTO_FOLDERS):
                group = activity.split("/")[0] + "-" + activity.rsplit("/", 1)[-1]
                yield Extracted(f"photos/gcompris/{group}/{Path(name).stem}.jpg", Image.open(io.BytesIO(blob)))


def wallpaper_photos(mate: Path, plasma: Path) -> Iterator[Extracted]:
    for name in MATE_PHOTOS:
        for path in mate.rglob(f"{name}.jpg"):
            yield Extracted(f"photos/mate/{name}.jpg", Image.open(path))
    for name in PLASMA_PHOTOS:  # each wallpaper comes in many sizes: one photo, its largest
        sizes = sorted(plasma.rglob(f"wallpapers/{name}/contents/images/*.jpg"), key=lambda p: p.stat().st_size)
        if sizes:
            yield Extracted(f"photos/plasma/{name}.jpg", Image.open(sizes[-1]))


def tuxpaint_cutouts(root: Path) -> Iterator[Extracted]:
    stamps = next(root.rglob("tuxpaint/stamps"))
    for category in TUXPAINT_CATEGORIES:
        for path in sorted((stamps / category).rglob("*.png")):
            if path.stem.endswith(("_mirror", "_flip")):
                continue  # Tux Paint's pre-mirrored variants: the same photo again
            image = Image.open(path)
            if image.mode in ("RGBA", "LA", "P"):
                yield Extracted(f"cutouts/{category.replace('/', '-')}/{path.stem}.png", image)


def save(item: Extracted, out: Path) -> str:
    target = out / item.relative
    target.parent.mkdir(parents=True, exist_ok=True)
    image = item.image
    if item.relative.startswith("cutouts/"):
        image = image.convert("RGBA")
        image.thumbnail((CUTOUT_SIDE, CUTOUT_SIDE), Image.Resampling.LANCZOS)
        image.save(target, optimize=True)
    else:
        image = image.convert("RGB")
        image.thumbnail((PHOTO_SIDE, PHOTO_SIDE), Image.Resampling.LANCZOS)
        image.save(target, quality=92)
    return hashlib.sha256(target.read_bytes()).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_complete(out: Path) -> bool:
    """The manifest exists and every file it lists is there with its checksum."""
    manifest = out / "MANIFEST.json"
    if not manifest.is_file():
        return False
    files = json.loads(manifest.read_text())["files"]
    return all((out / name).is_file() and sha256_file(out / name) == digest for name, digest in files.items())


def extract(out: Path) -> dict[str, object]:
    debs = download(PACKAGES, out / "debs")
    for stale in ("photos", "cutouts"):
        shutil.rmtree(out / stale, ignore_errors=True)
    files: dict[str, str] = {}
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        roots = {name: unpack(deb, Path(scratch) / name) for name, deb in debs.items()}
        items = [*gcompris_photos(roots["gcompris-qt-data"]),
                 *wallpaper_photos(roots["mate-backgrounds"], roots["plasma-workspace-wallpapers"]),
                 *tuxpaint_cutouts(roots["tuxpaint-stamps-default"])]
        for item in items:
            files[item.relative] = save(item, out)
        licences = out / "licences"
        licences.mkdir(exist_ok=True)
        for name, root in roots.items():
            for copyright_file in root.rglob("usr/share/doc/*/copyright"):
                shutil.copyfile(copyright_file, licences / f"{name}.copyright")
    manifest = {
        "packages": {name: {"deb": deb.name, "sha256": sha256_file(deb)} for name, deb in debs.items()},
        "files": dict(sorted(files.items())),
    }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, nargs="?", default=Path("data/real"))
    parser.add_argument("--force", action="store_true", help="extract again even if the manifest checks out")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.force and is_complete(args.out):
        print(f"{args.out}: complete (MANIFEST.json checks out)")
        return 0
    files = extract(args.out)["files"]
    photos = sum(1 for name in files if name.startswith("photos/"))
    print(f"{args.out}: {photos} photos and {len(files) - photos} cut-outs extracted; checksums in MANIFEST.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
