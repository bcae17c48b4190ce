"""A retrain starts from the served archive's own weights: out of a real .mar from scripts/archive.sh, bit for bit."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest
import torch

from food_rotation.rotation_model import RotationNet
from operations.served_weights import ServedWeightsError, served_weights
from tests.archives import state_bytes, write_mar
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def real_archive(tmp_path_factory):
    """food_rotation-v2.0.mar built by archive.sh from untrained mobilenet_v3_small weights with a temperature."""
    base = tmp_path_factory.mktemp("served")
    weights = base / "weights" / "tiny.pth"
    weights.parent.mkdir()
    torch.save(RotationNet("mobilenet_v3_small").state_dict(), weights)
    weights.with_suffix(".json").write_text(json.dumps({"arch": "mobilenet_v3_small", "image_size": 96,
                                                        "classes": [0, 90, 180, 270], "temperature": 1.7}))
    built = subprocess.run([str(ROOT / "scripts" / "archive.sh"), "--weights", str(weights), "--version", "2.0",
                            "--archive-name", "food_rotation-v2.0", "--export-path", str(base / "store")],
                           capture_output=True, text=True, timeout=180)
    assert built.returncode == 0, built.stderr
    return weights, base / "store" / "food_rotation-v2.0.mar"


def test_the_weights_and_their_json_come_out_of_a_real_archive(real_archive, tmp_path):
    original, archive = real_archive
    extracted = served_weights(archive, tmp_path / "scratch")
    assert extracted == tmp_path / "scratch" / "food_rotation-v2.0.pth"
    assert extracted.read_bytes() == original.read_bytes()
    state = torch.load(extracted, weights_only=True)
    RotationNet("mobilenet_v3_small").load_state_dict(state, strict=True)
    info = json.loads(extracted.with_suffix(".json").read_text())
    assert info == {"arch": "mobilenet_v3_small", "image_size": 96, "classes": [0, 90, 180, 270], "version": "2.0",
                    "archive": "food_rotation-v2.0.mar", "temperature": 1.7,
                    "sha256": hashlib.sha256(original.read_bytes()).hexdigest()}


def test_no_temperature_in_the_archive_none_in_the_json(tmp_path):
    archive = write_mar(tmp_path / "a.mar", "food_rotation", "1.0", state_bytes())
    assert "temperature" not in json.loads(served_weights(archive, tmp_path / "out").with_suffix(".json").read_text())


@pytest.mark.parametrize(("make", "message"), [
    (lambda path: path.write_bytes(b"not a zip"), "not a model archive"),
    (lambda path: write_mar(path, "food_rotation", "1.0"), "not a model archive"),  # no weights, no metadata
    (lambda path: write_mar(path, "food_rotation", "1.0", state_bytes(), weights_sha256="0" * 64), "sha256"),
    (lambda path: write_mar(path, "food_rotation", "1.0", state_bytes(), arch="resnet18"), "do not load"),
    (lambda path: write_mar(path, "food_rotation", "1.0", state_bytes(), classes=[0, 180]), "answers"),
])
def test_an_archive_that_cannot_be_fine_tuned_from_is_refused_and_leaves_nothing(tmp_path, make, message):
    archive = tmp_path / "bad.mar"
    make(archive)
    with pytest.raises(ServedWeightsError, match=message):
        served_weights(archive, tmp_path / "out")
    assert not list(tmp_path.glob("out/*"))
