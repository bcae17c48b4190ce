"""The feedback store's side of the deploy gate: named datasets (provenance: tests/unit/test_provenance.py)."""

from __future__ import annotations

import pytest

from auth_plugin.feedback.datasets import DatasetStore
from auth_plugin.feedback.gate_photos import HeldOutCorrections
from food_rotation.service_error import ServiceError
from tests.photos import encode, scene


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
