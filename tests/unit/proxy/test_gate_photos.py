"""The feedback store's side of the deploy gate: the photos an archive's provenance names, and named datasets."""

from __future__ import annotations

import pytest

from auth_plugin.feedback.datasets import DatasetStore
from auth_plugin.feedback.gate_photos import HeldOutCorrections
from food_rotation.provenance import DatasetUse, Provenance
from food_rotation.service_error import ServiceError
from tests.photos import encode, scene


async def test_an_archive_is_gated_on_the_held_out_photos_it_names_that_are_still_collected(tmp_path, caplog):
    store = DatasetStore(tmp_path / "datasets", 10**8)
    for seed in range(12):
        name, _, _ = store.add(encode(scene(seed=seed)), 90, "cook")
    split = store.split(name)
    assert split.held_out, "twelve photos hold some out"
    use = DatasetUse.of(name, split.manifest_sha256, split.train, [*split.held_out, tmp_path / ("0" * 64 + ".jpg")])
    provenance = Provenance((use,), 0, "1.0", "x", 0.5, None)
    found = await HeldOutCorrections(store).of(provenance, "food_rotation-v2.0.mar")
    assert sorted(found) == sorted(split.held_out)
    assert "names 1 held-out photos that are not collected here" in caplog.text


async def test_a_named_dataset_without_held_out_photos_is_a_422(tmp_path):
    store = DatasetStore(tmp_path / "datasets", 10**8)
    name, _, _ = store.add(encode(scene(seed=1)), 90, "cook")
    source = HeldOutCorrections(store)
    assert store.split(name).held_out == []  # this scene's sha256 puts it on the training side
    with pytest.raises(ServiceError) as refused:
        await source.named(name)
    assert (refused.value.status, refused.value.code) == (422, "no_held_out_photos")
    for seed in range(2, 14):
        store.add(encode(scene(seed=seed)), 90, "cook")
    assert sorted(await source.named("all")) == sorted(store.split(name).held_out)
