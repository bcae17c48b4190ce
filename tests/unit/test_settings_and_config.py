import re
from pathlib import Path

import pytest
import yaml

from handler_settings import HandlerSettings
from scripts.serving import ROOT, TorchServe, allowed_urls_for, read_properties


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
