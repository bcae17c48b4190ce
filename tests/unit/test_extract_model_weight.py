import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from food_rotation.rotation_model import RotationNet
from food_rotation.training.extract_model_weight import main, strip_prefixes
from tests.conftest import ROOT


def checkpoint(path: Path, prefix: str = "", arch: str = "mobilenet_v3_small", **extra) -> Path:
    state = {prefix + key: value for key, value in RotationNet(arch).state_dict().items()}
    torch.save({"epoch": 3, "state_dict": state, "optimizer": {"state": {}, "param_groups": []}, "best_acc": 0.9,
                "arch": arch, "classes": [0, 90, 180, 270], "train_acc": 0.95, "val_acc": 0.9, **extra}, path)
    return path


@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.", "module._orig_mod."])
def test_weights_only_file_loads_strictly(tmp_path, prefix, capsys):
    out = tmp_path / "w.pth"
    assert main([str(checkpoint(tmp_path / "c.tar", prefix)), str(out)]) == 0
    state = torch.load(out, weights_only=True)
    RotationNet("mobilenet_v3_small").load_state_dict(state, strict=True)
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["arch"] == "mobilenet_v3_small" and info["val_acc"] == 0.9 and len(info["sha256"]) == 64
    assert " MB) -> " in capsys.readouterr().out  # sizes before and after


def test_weights_are_much_smaller_than_the_checkpoint(tmp_path):
    ckpt = checkpoint(tmp_path / "c.tar", optimizer={"big": torch.zeros(2_000_000)})
    assert main([str(ckpt), str(tmp_path / "w.pth")]) == 0
    assert (tmp_path / "w.pth").stat().st_size < ckpt.stat().st_size / 2


def test_other_architectures_by_name(tmp_path):
    assert main([str(checkpoint(tmp_path / "c.tar", arch="resnet18")), str(tmp_path / "w.pth")]) == 0


@pytest.mark.parametrize("make_bad", [
    lambda p: p.write_text("not a checkpoint"),
    lambda p: torch.save({"weights": {}}, p),
    lambda p: torch.save({"state_dict": {"nope": torch.zeros(1)}, "arch": "mobilenet_v3_small"}, p),
    lambda p: checkpoint(p, arch="resnet18") and _relabel(p, "mobilenet_v3_small"),
    lambda p: checkpoint(p) and _relabel(p, "vgg99"),
])
def test_bad_input_exits_non_zero_and_writes_nothing(tmp_path, make_bad, capsys):
    bad = tmp_path / "bad.tar"
    make_bad(bad)
    assert main([str(bad), str(tmp_path / "w.pth")]) == 2
    assert "error:" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar"]


def test_missing_checkpoint(tmp_path, capsys):
    assert main([str(tmp_path / "none.tar")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_strip_prefixes_only_touches_wrappers():
    assert list(strip_prefixes({"module._orig_mod.a.b": 1, "backbone.module_x": 2})) == ["a.b", "backbone.module_x"]


def _relabel(path: Path, arch: str) -> None:
    data = torch.load(path, weights_only=True)
    data["arch"] = arch
    torch.save(data, path)


def test_the_command_line_people_run(tmp_path):
    """`python scripts/extract_model_weight.py IN.tar OUT.pth`, as the README has it: a thin wrapper over main()."""
    out = tmp_path / "w.pth"
    ran = subprocess.run([sys.executable, "scripts/extract_model_weight.py", str(checkpoint(tmp_path / "c.tar")),
                          str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert " MB) -> " in ran.stdout and out.is_file() and out.with_suffix(".json").is_file()
