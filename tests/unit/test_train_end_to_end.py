"""The end-to-end recipe: the frozen prefix stays exactly ImageNet's, everything after it learns, and the
checkpoint says which recipe made it."""

from __future__ import annotations

import torch

from food_rotation.rotation_model import RotationNet
from food_rotation.training import extract_model_weight, train_pretrained
from food_rotation.training.train_end_to_end import EndToEnd, fine_tune_end_to_end
from tests.photos import encode, scene


def _photos(folder, count, seed):
    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        path = folder / f"p{i}.jpg"
        path.write_bytes(encode(scene(seed=seed + i)))
        paths.append(path)
    return paths


def test_frozen_blocks_keep_their_weights_and_the_rest_learns(tmp_path):
    photos = _photos(tmp_path / "real", 3, 0)
    model = RotationNet("efficientnet_lite0")
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    options = EndToEnd(image_size=64, frozen_blocks=2, epochs=1, batch_size=4, workers=0)
    history = fine_tune_end_to_end(model, [("real", photos, 1)], photos[:1], options, torch.device("cpu"))
    after = model.state_dict()
    assert len(history) == 1 and 0 <= history[0]["val_acc"] <= 1
    for name in ("conv_stem.weight", "bn1.running_mean", "blocks.0.0.conv_dw.weight", "blocks.1.1.bn3.running_var"):
        assert torch.equal(after[f"backbone.{name}"], before[f"backbone.{name}"]), name
    for name in ("backbone.blocks.2.0.conv_pw.weight", "backbone.conv_head.weight", "head.3.weight"):
        assert not torch.equal(after[name], before[name]), name
    assert not model.training


def test_the_command_writes_a_checkpoint_the_extractor_reads(tmp_path):
    _photos(tmp_path / "data" / "train" / "real", 2, 10)
    _photos(tmp_path / "data" / "heldout" / "real", 1, 20)
    init = tmp_path / "init.pth"
    torch.save(RotationNet("efficientnet_lite0").state_dict(), init)
    out = tmp_path / "e2e.tar"
    assert train_pretrained.main([str(tmp_path / "data"), "--end-to-end", "--image-size", "64", "--epochs", "1",
                                  "--batch-size", "4", "--workers", "0", "--views-scale", "0.2", "--init", str(init),
                                  "--device", "cpu", "--out", str(out)]) == 0
    saved = torch.load(out, weights_only=False)
    assert saved["recipe"] == "EndToEnd" and saved["options"]["frozen_blocks"] == 0
    assert saved["image_size"] == 64 and saved["turn_averaging"] is True
    assert extract_model_weight.main([str(out), str(tmp_path / "e2e.pth")]) == 0
