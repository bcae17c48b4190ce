import json
import math
import re
from pathlib import Path

import pytest
import yaml

from food_rotation.handler_settings import HandlerSettings
from food_rotation.training.archive import metadata as build_metadata
from operations.torchserve_process import ROOT, TorchServe, allowed_urls_for, read_properties


def test_handler_settings_take_arch_from_metadata_and_tuning_from_yaml():
    settings = HandlerSettings.from_archive({"arch": "resnet18", "image_size": 160}, {"torch_threads": 2})
    assert (settings.arch, settings.image_size, settings.torch_threads) == ("resnet18", 160, 2)


@pytest.mark.parametrize("handler_config", [{"torch_thread": 1}, {"arch": "resnet18"}])
def test_unknown_or_misplaced_handler_settings_are_refused(handler_config):
    with pytest.raises(ValueError, match="unknown handler settings"):
        HandlerSettings.from_archive({"arch": "mobilenet_v3_small"}, handler_config)


def test_config_keeps_torchserve_on_loopback_with_its_token_auth():
    config = read_properties(ROOT / "config.properties")
    for key in ("inference_address", "management_address", "metrics_address"):
        assert config[key].startswith("http://127.0.0.1:")
    assert config["disable_token_authorization"] == "false"
    assert config["management_address"].startswith("http://127.0.0.1:")
    assert config["metrics_mode"] == "prometheus"
    assert int(config["max_request_size"]) >= 15 * 4 // 3 * 1_000_000


def test_the_largest_answer_fits_under_torchserve_s_response_limit():
    """TorchServe kills the worker whose answer is over max_response_size: the handler must refuse first."""
    model_config = yaml.safe_load((ROOT / "handler" / "model-config.yaml").read_text())
    settings = HandlerSettings.from_archive({"arch": "resnet18"}, model_config["handler"])
    assert 15 * 2**20 <= settings.max_answer_bytes  # a 15 MB photo's upright JPEG fits
    assert settings.max_answer_bytes < int(read_properties(ROOT / "config.properties")["max_response_size"])


def test_allowed_urls_match_only_archives_directly_in_the_model_store(tmp_path):
    store = tmp_path / "model store+1"
    server = TorchServe(home=tmp_path / "home", model_store=store)
    # What TorchServe's Java Properties loader sees: a doubled backslash is one backslash.
    pattern = re.compile(server.config["allowed_urls"].replace("\\\\", "\\"))
    assert pattern.match(f"file://{store}/food_rotation-v2.mar")
    for url in (f"file://{store}/sub/x.mar", f"file://{store}/x.mar.zip", "file:///etc/passwd",
                f"file://{tmp_path}/elsewhere/model_store/x.mar", "https://example.com/x.mar",
                f"http://127.0.0.1/{store}/x.mar"):
        assert not pattern.match(url), url


def test_overrides_win_over_the_repo_config(tmp_path):
    server = TorchServe(home=tmp_path, model_store=Path("/models"), overrides={"inference_address": "http://x:1"})
    assert server.inference_url == "http://x:1" and server.config["model_store"] == "/models"
    assert server.config["allowed_urls"] == allowed_urls_for(Path("/models"))


def test_channels_last_is_a_switch():
    assert HandlerSettings.from_archive({"arch": "resnet18"}, {"channels_last": False}).channels_last is False
    assert HandlerSettings.from_archive({"arch": "resnet18"}, None).channels_last is True


def test_temperature_comes_from_metadata_and_min_confidence_from_yaml():
    settings = HandlerSettings.from_archive({"arch": "resnet18", "temperature": 1.7}, {"min_confidence": "0.85"})
    assert (settings.temperature, settings.min_confidence) == (1.7, 0.85)
    whole = HandlerSettings.from_archive({"arch": "resnet18", "temperature": 2}, {"min_confidence": 1})
    assert isinstance(whole.temperature, float) and isinstance(whole.min_confidence, float)
    plain = HandlerSettings.from_archive({"arch": "resnet18", "temperature": None}, None)
    assert (plain.temperature, plain.min_confidence) == (1.0, 0.0)  # uncalibrated: plain softmax, always turn


def test_temperature_is_not_tunable_from_yaml():
    with pytest.raises(ValueError, match=r"unknown handler settings in model-config.yaml: temperature$"):
        HandlerSettings.from_archive({"arch": "resnet18"}, {"temperature": 2.0})


@pytest.mark.parametrize(("metadata", "handler_config", "message"), [
    ({"temperature": 0}, {}, "temperature"),
    ({"temperature": -1.5}, {}, "temperature"),
    ({"temperature": math.nan}, {}, "temperature"),
    ({"temperature": math.inf}, {}, "temperature"),
    ({}, {"min_confidence": -0.1}, "min_confidence"),
    ({}, {"min_confidence": 1.5}, "min_confidence"),
    ({}, {"min_confidence": math.nan}, "min_confidence"),
    ({}, {"min_confidence": "high"}, "could not convert"),
])
def test_bad_calibration_settings_fail_the_load(metadata, handler_config, message):
    with pytest.raises(ValueError, match=message):
        HandlerSettings.from_archive({"arch": "resnet18", **metadata}, handler_config)


def test_the_shipped_bar_is_a_confidence():
    model_config = yaml.safe_load((ROOT / "handler" / "model-config.yaml").read_text())
    bar = model_config["handler"]["min_confidence"]
    assert isinstance(bar, float) and 0 <= bar <= 1
    assert HandlerSettings.from_archive({"arch": "resnet18"}, model_config["handler"]).min_confidence == bar


def test_archive_metadata_carries_the_calibration_when_the_weights_have_one(weights_copy):
    assert "temperature" not in build_metadata(weights_copy, "food_rotation", "1.0")
    sidecar = weights_copy.with_suffix(".json")
    info = json.loads(sidecar.read_text())
    calibration = {"method": "temperature", "photos": 412, "ece_before": 0.081, "ece_after": 0.019}
    sidecar.write_text(json.dumps({**info, "temperature": 1.43, "calibration": calibration}))
    metadata = build_metadata(weights_copy, "food_rotation", "1.0")
    assert metadata["temperature"] == 1.43 and metadata["calibration"] == calibration
    assert HandlerSettings.from_archive(metadata, None).temperature == 1.43


@pytest.mark.parametrize("extra", [{"temperature": 0}, {"temperature": "warm"}, {"calibration": [1, 2]}])
def test_archive_metadata_refuses_a_bad_calibration(weights_copy, extra):
    sidecar = weights_copy.with_suffix(".json")
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), **extra}))
    with pytest.raises(ValueError, match=r"^(temperature|calibration) in the weights"):
        build_metadata(weights_copy, "food_rotation", "1.0")


def test_torchserve_ports_move_by_environment_and_stay_on_loopback(tmp_path):
    import pytest

    from operations.processes import ServingError

    moved = TorchServe.from_env(tmp_path, tmp_path, {"TORCHSERVE_INFERENCE_PORT": "9180",
                                                     "TORCHSERVE_MANAGEMENT_PORT": "9181",
                                                     "TORCHSERVE_GRPC_INFERENCE_PORT": "9183"})
    assert (moved.inference_url, moved.management_url) == ("http://127.0.0.1:9180", "http://127.0.0.1:9181")
    assert moved.config["grpc_inference_port"] == "9183" and moved.config["metrics_address"].endswith(":8182")
    with pytest.raises(ServingError, match="TORCHSERVE_METRICS_PORT"):
        TorchServe.from_env(tmp_path, tmp_path, {"TORCHSERVE_METRICS_PORT": "0.0.0.0:80"})


def test_the_small_profile_sizes_torchserve_and_the_gateway_down(tmp_path):
    import pytest

    from operations.processes import ServingError
    from operations.torchserve_process import profile_proxy_env

    small = TorchServe.from_env(tmp_path, tmp_path, {"PROFILE": "small", "TORCHSERVE_INFERENCE_PORT": "9180"})
    assert small.config["default_workers_per_model"] == "1" and "-Xmx256m" in small.config["vmargs"]
    assert small.inference_url == "http://127.0.0.1:9180"  # ports still move under a profile
    assert profile_proxy_env({"PROFILE": "small"})["PROXY_DEPLOY_WORKERS"] == "1"
    assert "PROXY_DEPLOY_WORKERS" not in profile_proxy_env({"PROFILE": "small", "PROXY_DEPLOY_WORKERS": "2"})
    assert profile_proxy_env({}) == {} and TorchServe.from_env(tmp_path, tmp_path, {}).config["vmargs"].startswith(
        "-Xmx512m")
    for unknown in ("huge", "../small"):
        with pytest.raises(ServingError, match="is not one of: default, small"):
            TorchServe.from_env(tmp_path, tmp_path, {"PROFILE": unknown})


def test_two_instances_on_one_host_never_share_worker_sockets(tmp_path):
    """TorchServe names its workers' sockets java.io.tmpdir/.ts.sock.<port>: each instance has its own folder and
    first port (issue 33), and a home too deep for a socket's name gets a short folder of its own."""
    first = TorchServe.on_free_ports(tmp_path / "a", tmp_path)
    second = TorchServe.on_free_ports(tmp_path / "b", tmp_path)
    assert first.launch_config["vmargs"].endswith(f"-Djava.io.tmpdir={tmp_path / 'a' / 'tmp'}")
    assert first.launch_config["vmargs"].startswith(first.config["vmargs"])
    assert first.socket_dir != second.socket_dir
    assert first.config["initial_worker_port"] != second.config["initial_worker_port"]
    deep = TorchServe.on_free_ports(tmp_path / ("d" * 120), tmp_path)
    assert len(str(deep.socket_dir)) < 40 and deep.socket_dir != TorchServe.on_free_ports(tmp_path / "e", tmp_path
                                                                                           ).socket_dir
