"""scripts/archive.sh builds a real .mar with torch-model-archiver; these tests open what it wrote."""

from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from food_rotation.training.archive import staged_library
from tests.conftest import ROOT

ARCHIVE = ROOT / "scripts" / "archive.sh"


def archive(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ARCHIVE), *args], capture_output=True, text=True, timeout=120)


def test_archive_holds_handler_model_weights_config_and_metadata(tmp_path, weights_copy):
    result = archive("--weights", str(weights_copy), "--version", "2.1", "--export-path", str(tmp_path))
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(tmp_path / "food_rotation.mar") as mar:
        names = set(mar.namelist())
        manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))["model"]
        metadata = json.loads(mar.read("metadata.json"))
        config = yaml.safe_load(mar.read("model-config.yaml"))
        weights = mar.read(weights_copy.name)
    handler_files = {path.name for path in (ROOT / "handler").glob("*.py")}  # the adapter, flat at the top
    library = {f"food_rotation/{path.name}" for path in (ROOT / "food_rotation").glob("*.py")}  # its own library
    assert {"rotation_handler.py", "prepared.py"} <= handler_files
    assert {"food_rotation/__init__.py", "food_rotation/photo_io.py", "food_rotation/rotation_model.py"} <= library
    assert handler_files | library | {weights_copy.name, "metadata.json", "model-config.yaml"} <= names
    assert not any("__pycache__" in name for name in names)
    assert not any(name.startswith(("food_rotation/training/", "operations/")) for name in names)
    assert manifest["modelName"] == "food_rotation" and manifest["modelVersion"] == "2.1"
    assert manifest["handler"] == "rotation_handler.py" and manifest["serializedFile"] == weights_copy.name
    assert metadata["version"] == "2.1" and metadata["arch"] == "mobilenet_v3_small"
    assert metadata["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    assert metadata["val_acc"] is not None and metadata["train_acc"] is not None and metadata["created_at"]
    assert config["batchSize"] >= 1 and config["handler"]["torch_threads"] == 1


def test_a_version_shows_the_evaluation_of_the_weights_it_carries_and_no_other(tmp_path, weights_copy):
    sidecar = weights_copy.with_suffix(".json")
    info = json.loads(sidecar.read_text())
    sha256 = hashlib.sha256(weights_copy.read_bytes()).hexdigest()
    evaluation = {"accuracy": 0.9, "fix": 0.5, "harm": 0.0, "harmed": 0, "upright": 84, "weights_sha256": sha256}
    carried = {}
    for name, recorded_sha256 in (("these", sha256), ("earlier", "0" * 64)):  # earlier: the weights changed since
        sidecar.write_text(json.dumps({**info, "evaluation": {**evaluation, "weights_sha256": recorded_sha256}}))
        result = archive("--weights", str(weights_copy), "--version", "1.0", "--export-path", str(tmp_path / name))
        assert result.returncode == 0, result.stderr
        with zipfile.ZipFile(tmp_path / name / "food_rotation.mar") as mar:
            carried[name] = json.loads(mar.read("metadata.json")).get("evaluation")
    assert carried["these"] == evaluation
    assert carried["earlier"] is None and "evaluation is of other weights" in result.stderr


def test_staged_library_is_what_the_handler_imports_without_training_or_operations(tmp_path):
    """Every .mar carries food_rotation for the handler, but not its training and operations subpackages."""
    staged = staged_library(tmp_path)
    files = {path.relative_to(staged).as_posix() for path in staged.rglob("*") if path.is_file()}
    assert {"food_rotation/__init__.py", "food_rotation/rotation_model.py", "food_rotation/photo_io.py"} <= files
    assert (ROOT / "food_rotation" / "training").is_dir()
    assert not any(name.startswith("food_rotation/training") for name in files)


def test_archive_name_lets_versions_sit_side_by_side(tmp_path, weights_copy):
    for version in ("1.0", "2.0"):
        result = archive("--weights", str(weights_copy), "--version", version, "--export-path", str(tmp_path),
                         "--archive-name", f"food_rotation-v{version}")
        assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.glob("*.mar")) == ["food_rotation-v1.0.mar", "food_rotation-v2.0.mar"]


def test_two_builds_of_one_name_at_once_do_not_collide(tmp_path, weights_copy):
    """torch-model-archiver scratches in $TMPDIR/<model-name>; archive.sh gives each run its own TMPDIR."""
    def build(index: int) -> subprocess.CompletedProcess:
        return archive("--weights", str(weights_copy), "--version", "1.0", "--export-path", str(tmp_path / str(index)))

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(build, range(2)))
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    for index in range(2):
        with zipfile.ZipFile(tmp_path / str(index) / "food_rotation.mar") as mar:
            assert mar.testzip() is None


@pytest.mark.parametrize(("args", "message"), [
    ([], "--weights is required"),
    (["--weights", "/nonexistent.pth", "--version", "1.0"], "weights file not found"),
    (["--version", "1.0; rm -rf /"], "bad version"),
    (["--version", "v2"], "bad version"),
    (["--version", "1.0", "--name", "../evil"], "bad model name"),
    (["--version", "1.0", "--bogus"], "unknown argument"),
])
def test_refusals_are_clear(tmp_path, weights_copy, args, message):
    if "--weights" not in args and args:
        args = ["--weights", str(weights_copy), *args]
    result = archive(*args, "--export-path", str(tmp_path))
    assert result.returncode != 0 and message in result.stderr
    assert not list(tmp_path.glob("*.mar"))


def test_weights_without_their_json_are_refused(tmp_path, weights_copy):
    weights_copy.with_suffix(".json").unlink()
    result = archive("--weights", str(weights_copy), "--version", "1.0", "--export-path", str(tmp_path))
    assert result.returncode != 0 and "extract_model_weight.py" in result.stderr


def test_existing_archive_needs_force(tmp_path, weights_copy):
    args = ["--weights", str(weights_copy), "--version", "1.0", "--export-path", str(tmp_path)]
    assert archive(*args).returncode == 0
    second = archive(*args)
    assert second.returncode != 0 and "--force" in second.stderr
    assert archive(*args, "--force").returncode == 0


def test_workers_sets_how_many_workers_the_archive_asks_for(tmp_path, weights_copy):
    result = archive("--weights", str(weights_copy), "--version", "1.0", "--export-path", str(tmp_path),
                     "--workers", "1")
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(tmp_path / "food_rotation.mar") as mar:
        config = yaml.safe_load(mar.read("model-config.yaml"))
    shipped = yaml.safe_load((ROOT / "handler" / "model-config.yaml").read_text())
    assert (config["minWorkers"], config["maxWorkers"]) == (1, 1)
    assert config["handler"] == shipped["handler"]  # everything else as shipped
    refused = archive("--weights", str(weights_copy), "--version", "1.0", "--export-path", str(tmp_path),
                      "--workers", "0", "--force")
    assert refused.returncode == 2 and "--workers must be at least 1" in refused.stderr
