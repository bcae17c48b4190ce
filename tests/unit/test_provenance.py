"""A retrained version's provenance travels as one value into its archive and back to the deploy gate, which gates
on exactly the corrections held out of its training."""

from __future__ import annotations

import json
import zipfile

import pytest

from auth_plugin.feedback.datasets import DatasetStore
from auth_plugin.feedback.gate_photos import HeldOutCorrections
from food_rotation.provenance import DatasetUse, Provenance
from food_rotation.training.archive import build_archive
from tests.photos import encode, scene


@pytest.fixture
def collected(tmp_path):
    store = DatasetStore(tmp_path / "datasets", 100_000_000)
    for seed in range(12):
        store.add(encode(scene(seed=seed)), 0, "cook")
    return store


async def test_the_archive_names_every_held_out_photo_and_the_gate_finds_them(collected, tmp_path, weights_copy):
    name = collected.active()
    split = collected.split(name)
    assert split.held_out and split.train  # 12 photos: some of each, chosen by sha256
    provenance = Provenance((DatasetUse.of(name, split.manifest_sha256, split.train, split.held_out),), 8, "1.0",
                            "ab" * 32, 0.95, 0.5)
    archive = build_archive(weights_copy, "2.0", archive_name="food_rotation-v2.0", export_path=tmp_path / "store",
                            provenance=provenance)
    with zipfile.ZipFile(archive) as mar:
        metadata = json.loads(mar.read("metadata.json"))
    entry = metadata["datasets"][0]
    assert entry["name"] == name and entry["held_out_photos"] == len(split.held_out)
    assert entry["train_photos"] == len(split.train) and metadata["init_version"] == "1.0"
    read_back = Provenance.from_metadata(metadata)
    assert read_back == provenance
    assert sorted(await HeldOutCorrections(collected).of(read_back, archive.name)) == sorted(split.held_out)


async def test_photos_no_longer_collected_are_skipped_and_a_version_not_retrained_has_none(collected, caplog):
    name = collected.active()
    split = collected.split(name)
    gone = DatasetUse(name, split.manifest_sha256, 0, (split.held_out[0].stem, "0" * 64))
    elsewhere = DatasetUse("trained-elsewhere", "", 0, ("1" * 64,))
    found = await HeldOutCorrections(collected).of(Provenance((gone, elsewhere), 0, None, "", 1.0, None), "v.mar")
    assert found == [split.held_out[0]]
    assert "names 2 held-out photos that are not collected here" in caplog.text
    assert Provenance.from_metadata({"arch": "efficientnet_lite0", "version": "1.0"}) is None
