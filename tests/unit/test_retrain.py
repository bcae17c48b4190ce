"""What a retrain starts from (the served default, else offline the newest archive, else what --init names), the
efficientnet_lite0 path, its rule chosen leaving one source out, and the next version's number."""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import zipfile

import pytest
import torch
import yaml

from auth_plugin.control import models_cli
from auth_plugin.control.models_cli import Refused
from auth_plugin.feedback.datasets import DatasetStore
from food_rotation.rotation_model import RotationNet
from food_rotation.training import extract_model_weight
from food_rotation.training.fine_tune_version import Schedule, fine_tune_top
from operations import retrain, retrain_start, served_weights
from operations.retrain import next_version, starting_weights
from operations.retrain_plan import shortfall
from tests.archives import state_bytes, write_mar
from tests.conftest import ROOT
from tests.photos import encode, real_sources, scene

VERSIONS = {"versions": [{"version": "1.0", "default": False, "archive": "food_rotation.mar"},
                         {"version": "2.0", "default": True, "archive": "food_rotation-v2.0.mar"}]}


def test_next_version_is_one_major_above_the_highest_of_this_model(tmp_path):
    assert next_version(tmp_path, "food_rotation") == "1.0"
    write_mar(tmp_path / "food_rotation.mar", "food_rotation", "1.0")
    write_mar(tmp_path / "food_rotation-v2.1.mar", "food_rotation", "2.1")
    write_mar(tmp_path / "other.mar", "other_model", "9.0")
    (tmp_path / "broken.mar").write_bytes(b"not a zip")
    assert next_version(tmp_path, "food_rotation") == "3.0"


@pytest.fixture
def store(tmp_path):
    """1.0, 2.0 (the default) and 3.0 (the newest: a canary, say), each with its own temperature."""
    folder = tmp_path / "model_store"
    folder.mkdir()
    for version, name in (("1.0", "food_rotation.mar"), ("2.0", "food_rotation-v2.0.mar"),
                          ("3.0", "food_rotation-v3.0.mar")):
        write_mar(folder / name, "food_rotation", version, state_bytes(), temperature=float(version[0]))
    return folder


def options(store, *extra: str):
    return retrain.parse_args(["--model-store", str(store), "--url", "http://proxy.test", "--token", "t", *extra])


def fake_proxy(monkeypatch, answer: dict | Exception) -> list[tuple]:
    calls = []

    def admin_call(url, model, token, method, path, body=None):
        calls.append((url, model, token, method, path))
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(served_weights, "admin_call", admin_call)
    return calls


def test_by_default_the_version_the_proxy_serves_is_fine_tuned_not_the_newest(tmp_path, store, monkeypatch):
    calls = fake_proxy(monkeypatch, VERSIONS)
    init = starting_weights(options(store), tmp_path / "scratch")
    assert calls == [("http://proxy.test", "food_rotation", "t", "GET", "")]
    assert init.read_bytes() == zipfile.ZipFile(store / "food_rotation-v2.0.mar").read("w.pth")
    info = json.loads(init.with_suffix(".json").read_text())
    assert (info["version"], info["temperature"], info["arch"]) == ("2.0", 2.0, "mobilenet_v3_small")
    (store / "food_rotation-v2.0.mar").unlink()  # another model store than the proxy's: say so, guess nothing
    with pytest.raises(SystemExit, match="not in"):
        starting_weights(options(store), tmp_path / "scratch")


def test_offline_without_deploying_the_newest_archive_is_fine_tuned_with_a_note(tmp_path, store, monkeypatch, capsys):
    fake_proxy(monkeypatch, Refused("error: the proxy at http://proxy.test did not answer: refused"))
    init = starting_weights(options(store, "--no-deploy"), tmp_path / "scratch")
    assert json.loads(init.with_suffix(".json").read_text())["version"] == "3.0"
    out = capsys.readouterr().out
    assert "note:" in out and "food_rotation-v3.0.mar" in out and "may not be the version served" in out


def test_offline_without_a_token_counts_as_offline(tmp_path, store, monkeypatch):
    monkeypatch.delenv("PROXY_ADMIN_TOKEN", raising=False)
    monkeypatch.setattr(models_cli, "SAVED_ADMIN_TOKEN", tmp_path / "no_token")
    args = retrain.parse_args(["--model-store", str(store), "--no-deploy"])
    assert starting_weights(args, tmp_path / "scratch").name == "food_rotation-v3.0.pth"


@pytest.mark.parametrize(("answer", "extra"), [
    (Refused("error: the proxy did not answer"), ()),  # a run that deploys needs the proxy: stop before training
    (Refused("refused (401 invalid_token): no", 401), ("--no-deploy",)),  # it answered: never guess past it
    ({"versions": []}, ("--no-deploy",)),
])
def test_when_the_served_version_cannot_be_told_nothing_is_guessed(tmp_path, store, monkeypatch, answer, extra):
    fake_proxy(monkeypatch, answer)
    with pytest.raises(SystemExit, match="--init demo"):
        starting_weights(options(store, *extra), tmp_path / "scratch")


def test_init_names_the_demo_weights_an_archive_or_a_weights_file(tmp_path, store, monkeypatch):
    fake_proxy(monkeypatch, AssertionError("--init given: the proxy is not asked"))
    assert starting_weights(options(store, "--init", "demo"), tmp_path) == retrain_start.DEMO_WEIGHTS
    by_name = starting_weights(options(store, "--init", "food_rotation.mar"), tmp_path / "a")
    assert json.loads(by_name.with_suffix(".json").read_text())["version"] == "1.0"
    by_path = starting_weights(options(store, "--init", str(store / "food_rotation-v3.0.mar")), tmp_path / "b")
    assert json.loads(by_path.with_suffix(".json").read_text())["version"] == "3.0"
    assert starting_weights(options(store, "--init", str(by_name)), tmp_path) == by_name
    with pytest.raises(SystemExit, match="no such weights file"):
        starting_weights(options(store, "--init", str(tmp_path / "none.pth")), tmp_path)
    with pytest.raises(SystemExit, match="not a model archive"):
        starting_weights(options(store, "--init", "missing.mar"), tmp_path)


def photos(folder, seeds) -> list:
    folder.mkdir(parents=True)
    for seed in seeds:
        (folder / f"p{seed}.jpg").write_bytes(encode(scene(seed).resize((96, 72))))
    return sorted(folder.glob("*.jpg"))


def test_lite0_learns_on_top_of_its_frozen_blocks_into_a_checkpoint_the_extractor_reads(tmp_path):
    torch.manual_seed(0)
    start = RotationNet("efficientnet_lite0").state_dict()
    init = tmp_path / "lite0.pth"
    torch.save(start, init)
    info = {"arch": "efficientnet_lite0", "image_size": 64}
    checkpoint = tmp_path / "c.tar"
    result = fine_tune_top(Schedule(epochs=1, lr=1e-3, seed=0), init, info, photos(tmp_path / "train", range(4)),
                           photos(tmp_path / "demo", range(10, 12)), photos(tmp_path / "held", range(20, 22)),
                           checkpoint)
    assert {"val_acc", "init_val_acc", "train_acc"} <= set(result) and "state_dict" not in result
    assert extract_model_weight.main([str(checkpoint), str(tmp_path / "w.pth")]) == 0
    trained = torch.load(tmp_path / "w.pth", weights_only=True)
    frozen = ("backbone.conv_stem.", "backbone.bn1.", *(f"backbone.blocks.{block}." for block in range(5)))
    assert all(torch.equal(trained[key], start[key]) for key in start if key.startswith(frozen))
    assert not torch.equal(trained["head.3.weight"], start["head.3.weight"])  # the four-turn head learnt


def test_an_offline_retrain_starts_from_the_newest_archive_and_says_so_in_the_next(tmp_path, monkeypatch, capsys):
    """main end to end, --no-deploy with no proxy: 1.0 (efficientnet_lite0, T=1.5) -> 2.0 carrying where it began."""
    model_store, weights = tmp_path / "model_store", tmp_path / "weights" / "lite0.pth"
    weights.parent.mkdir()
    torch.save(RotationNet("efficientnet_lite0").state_dict(), weights)
    weights.with_suffix(".json").write_text(json.dumps({"arch": "efficientnet_lite0", "image_size": 64,
                                                        "classes": [0, 90, 180, 270], "temperature": 1.5,
                                                        "turn_averaging": True}))
    subprocess.run([str(ROOT / "scripts" / "archive.sh"), "--weights", str(weights), "--version", "1.0",
                    "--export-path", str(model_store)], check=True, capture_output=True, timeout=180)
    datasets = DatasetStore(tmp_path / "datasets", 10**8)
    for seed in itertools.count():  # until at least 8 photos are for training and 1 is held out
        datasets.add(encode(scene(seed).resize((96, 72))), 0, "cook")
        split = datasets.split("feedback-1")
        if shortfall(len(split.train), len(split.held_out)) is None:
            break
    monkeypatch.setenv("TQDM_DISABLE", "1")
    arguments = ["--no-deploy", "--epochs", "1", "--demo-scenes", "0", "--datasets-dir", str(tmp_path / "datasets"),
                 "--model-store", str(model_store), "--weights-dir", str(tmp_path / "retrained"),
                 "--url", "http://127.0.0.1:9", "--token", "t", "--source-augmentations", "0",
                 "--sources", str(real_sources(tmp_path / "real"))]
    with pytest.raises(SystemExit) as planned:  # --plan: says what it would do, trains nothing
        retrain.main([*arguments, "--plan"])
    said = capsys.readouterr().out
    assert planned.value.code == 0 and not (model_store / "food_rotation-v2.0.mar").exists()
    assert "plan: fine-tune 1.0 (food_rotation.mar, efficientnet_lite0) for 1 epochs" in said
    assert "data: too few to expect a measurable change" in said
    assert retrain.main([*arguments, "--cross-validate", "2", "--workers", "1"]) == 0
    assert "cross-validation, 2 folds of" in capsys.readouterr().out
    with zipfile.ZipFile(model_store / "food_rotation-v2.0.mar") as mar:
        metadata = json.loads(mar.read("metadata.json"))
    assert (metadata["version"], metadata["arch"], metadata["image_size"]) == ("2.0", "efficientnet_lite0", 64)
    assert metadata["init_version"] == "1.0"
    # its rule: chosen leaving out each of the four sources and the dataset (five groups), served by the archive
    by_source = metadata["evaluation_by_source"]
    assert (by_source["groups"], by_source["how"], by_source["max_harm"]) == (5, "leave one source out", 0.01)
    assert by_source["worst_harm"] <= 0.01 and metadata["temperature"] == by_source["temperature"] != 1.5
    with zipfile.ZipFile(model_store / "food_rotation-v2.0.mar") as mar:
        config = yaml.safe_load(mar.read("model-config.yaml"))
    served = config["handler"]
    assert served["min_confidence"] == by_source["threshold"] and served["require_agreement"] is True
    assert (config["minWorkers"], config["maxWorkers"]) == (1, 1)  # --workers: what TorchServe starts
    assert metadata["init_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    sidecar = json.loads((tmp_path / "retrained" / "food_rotation-v2.0.json").read_text())
    assert len(sidecar["cross_validation"]["folds"]) == 2


@pytest.mark.parametrize("workers", ["0", "-1", "two"])
def test_a_worker_count_below_one_is_refused_before_any_training(workers, capsys):
    with pytest.raises(SystemExit) as refused:
        retrain.parse_args(["--workers", workers])
    assert refused.value.code == 2
    assert f"--workers: must be a whole number of at least 1, got {workers!r}" in capsys.readouterr().err


@pytest.mark.parametrize(("environ", "extra", "workers"), [
    ({}, [], 2), ({"PROFILE": "small"}, [], 1), ({"PROFILE": "small", "PROXY_DEPLOY_WORKERS": "3"}, [], 3),
    ({"PROFILE": "small"}, ["--workers", "2"], 2)])
def test_a_version_is_archived_with_the_workers_the_gateway_deploys_with(environ, extra, workers, monkeypatch):
    """TorchServe starts what an archive says, whatever the deploy asks: on the small node (2 GiB) a two-worker
    canary beside the default's one worker (~750 MB each) would not fit."""
    for name in ("PROFILE", "PROXY_DEPLOY_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert retrain.parse_args(extra).workers == workers


def test_an_unknown_profile_is_refused_in_a_sentence(monkeypatch):
    monkeypatch.setenv("PROFILE", "huge")
    with pytest.raises(SystemExit, match="error: PROFILE='huge' is not one of: default, small"):
        retrain.parse_args([])


def test_a_refused_archive_leaves_the_store_so_its_version_is_not_spent(tmp_path, monkeypatch):
    store = tmp_path / "store"
    store.mkdir()
    write_mar(store / "food_rotation.mar", "food_rotation", "1.0")
    write_mar(store / "food_rotation-v2.0.mar", "food_rotation", "2.0")
    monkeypatch.setattr(retrain, "REFUSED_DIR", tmp_path / "refused")

    def refused(*_args, **_kwargs):
        raise Refused("refused (422 gate_refused): real photos never trained on: turns 25.0% ...", 422)

    monkeypatch.setattr(retrain, "admin_call", refused)
    monkeypatch.setenv("PROXY_ADMIN_TOKEN", "frs_test")
    args = retrain.parse_args(["--model-store", str(store)])
    with pytest.raises(SystemExit, match="its version is not spent"):
        retrain.deploy(args, "food_rotation-v2.0.mar")
    assert (tmp_path / "refused" / "food_rotation-v2.0.mar").is_file()
    assert next_version(store, "food_rotation") == "2.0"
