"""training/train.py and evaluate.py end to end on a handful of generated photos (seconds, not minutes)."""

from __future__ import annotations

import hashlib
import json

import torch
from PIL import Image

from food_rotation.training import evaluate, extract_model_weight, train
from tests.photos import encode, scene


def test_train_writes_the_checkpoint_the_extractor_and_evaluator_read(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in range(6):
        (photos / f"p{seed}.jpg").write_bytes(encode(scene(seed).resize((96, 72)), "JPEG"))
    checkpoint = tmp_path / "c.tar"
    assert train.main([str(photos), "--epochs", "1", "--batch-size", "8", "--image-size", "64", "--workers", "0",
                       "--val-fraction", "0.34", "--out", str(checkpoint)]) == 0
    saved = torch.load(checkpoint, weights_only=True)
    assert {"epoch", "state_dict", "optimizer", "best_acc", "arch", "classes", "train_acc", "val_acc"} <= set(saved)
    assert saved["classes"] == [0, 90, 180, 270] and saved["image_size"] == 64
    assert (saved["train_photos"], saved["val_photos"]) == (4, 2)  # split by photo: 6 photos, never 24 copies

    weights = tmp_path / "w.pth"
    assert extract_model_weight.main([str(checkpoint), str(weights)]) == 0
    report, matrix = tmp_path / "eval.json", tmp_path / "confusion.png"
    assert evaluate.main([str(weights), str(photos), "--matrix", str(matrix), "--json", str(report)]) == 0
    figures = json.loads(report.read_text())
    assert figures["photos"] == 6 and sum(map(sum, figures["confusion"])) == 24
    assert set(figures["per_class"]) == {"0", "90", "180", "270"}
    assert {"harm", "fix", "wrong_turn", "coverage", "ece", "min_confidence", "temperature", "suggested"} <= set(
        figures)
    assert Image.open(matrix).format == "PNG"

    assert evaluate.main([str(weights), str(photos), "--record"]) == 0  # what the archive's version will show
    recorded = json.loads(weights.with_suffix(".json").read_text())["evaluation"]
    assert recorded["photos"] == 6 and recorded["upright"] == 6 and recorded["accuracy"] == figures["accuracy"]
    assert recorded["harm"] == figures["harm"] and recorded["data"] == [str(photos)]
    assert recorded["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()


def test_evaluate_refuses_what_it_cannot_read(tmp_path, capsys):
    (tmp_path / "w.pth").write_bytes(b"nothing")
    assert evaluate.main([str(tmp_path / "w.pth"), str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().err
    (tmp_path / "c.tar").write_bytes(b"nothing")
    assert evaluate.main([str(tmp_path / "c.tar"), str(tmp_path), "--write-temperature"]) == 2
    assert "--write-temperature" in capsys.readouterr().err
