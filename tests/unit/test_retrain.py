"""The next version's number comes from what the model store holds for this model, nothing else."""

from __future__ import annotations

import json
import zipfile

from scripts.retrain import next_version


def fake_archive(path, model: str, version: str) -> None:
    with zipfile.ZipFile(path, "w") as mar:
        mar.writestr("MAR-INF/MANIFEST.json", json.dumps({"model": {"modelName": model, "modelVersion": version}}))


def test_next_version_is_one_major_above_the_highest_of_this_model(tmp_path):
    assert next_version(tmp_path, "food_rotation") == "1.0"
    fake_archive(tmp_path / "food_rotation.mar", "food_rotation", "1.0")
    fake_archive(tmp_path / "food_rotation-v2.1.mar", "food_rotation", "2.1")
    fake_archive(tmp_path / "other.mar", "other_model", "9.0")
    (tmp_path / "broken.mar").write_bytes(b"not a zip")
    assert next_version(tmp_path, "food_rotation") == "3.0"
