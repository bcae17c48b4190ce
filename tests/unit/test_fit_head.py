"""make weights' last step on a small real folder: a new head on the frozen backbone, the leave-one-source-out
threshold and summary written beside it, and the archive carrying that summary for these weights only."""

from __future__ import annotations

import hashlib
import json

import torch

from food_rotation.rotation_model import RotationNet
from food_rotation.training import evaluate, fit_head
from food_rotation.training.archive import metadata
from tests.photos import real_sources


def test_fit_head_keeps_the_backbone_and_records_what_it_does_on_sources_left_out(tmp_path):
    torch.manual_seed(0)
    backbone = tmp_path / "e2e.pth"
    net = RotationNet("efficientnet_lite0", turn_averaging=True)
    torch.save(net.state_dict(), backbone)
    backbone.with_suffix(".json").write_text(json.dumps({"arch": "efficientnet_lite0", "image_size": 64,
                                                         "classes": [0, 90, 180, 270], "turn_averaging": True,
                                                         "val_acc": 0.5, "evaluation": {"accuracy": 0.5}}))
    real_sources(tmp_path / "real")  # four source groups of four photos
    out = tmp_path / "shipped.pth"

    assert fit_head.main([str(backbone), str(tmp_path / "real"), "--out", str(out), "--augmentations", "1",
                          "--threads", "1"]) == 0

    shipped = torch.load(out, weights_only=True)
    kept = net.state_dict()
    assert all(torch.equal(shipped[name], kept[name]) for name in kept if name.startswith("backbone."))
    assert not torch.equal(shipped["head.3.weight"], kept["head.3.weight"])
    info = json.loads(out.with_suffix(".json").read_text())
    by_source = info["evaluation_by_source"]
    assert by_source["groups"] == 4 and by_source["all_photos"] == 16 and 0 <= by_source["worst_harm"] <= 1
    assert info["min_confidence"] == by_source["threshold"] and info["temperature"] > 0
    assert "val_acc" not in info and "evaluation" not in info  # the backbone's own head's figures are dropped
    assert by_source["weights_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert metadata(out, "food_rotation", "1.0")["evaluation_by_source"] == by_source

    table, report = tmp_path / "by_source.md", tmp_path / "left_out.json"
    assert evaluate.main([str(out), str(tmp_path / "real"), "--by-source", "--markdown", str(table),
                          "--threads", "1"]) == 0
    rows = [line for line in table.read_text().splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[2:]] == ["| interiors", "| lomiri", "| mate (seen)", "| plasma (seen)",
                                                          "| **food groups**", "| **all groups**"]
    assert evaluate.main([str(backbone), str(tmp_path / "real"), "--leave-one-source-out", "--augmentations", "0",
                          "--square", "--json", str(report), "--threads", "1"]) == 0
    assert json.loads(report.read_text())["summary"]["all_photos"] == 16
    assert evaluate.main([str(out), str(tmp_path / "nowhere"), "--by-source"]) == 2
