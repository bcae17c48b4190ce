import dataclasses
import json
import typing
from pathlib import Path

import pytest

from auth_plugin.forwarding import forwarded_headers, returned_headers
from auth_plugin.rate_limit import RateLimiter
from auth_plugin.settings import JwtSettings, ProxySettings
from auth_plugin.torchserve_keys import KeysUnavailable, TorchServeKeys, _epoch


def test_token_bucket_refills_at_the_rate():
    now = [0.0]
    limiter = RateLimiter(rate=2, burst=3, clock=lambda: now[0])
    assert [limiter.acquire("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.acquire("a") == pytest.approx(0.5)
    assert limiter.acquire("b") == 0  # buckets are per caller
    now[0] += 0.5
    assert limiter.acquire("a") == 0
    assert RateLimiter.retry_after(0.2) == "1" and RateLimiter.retry_after(2.1) == "3"


def test_rate_limit_off_by_default():
    limiter = RateLimiter(ProxySettings().rate_limit_per_s, 1)
    assert not limiter.enabled and all(limiter.acquire("a") == 0 for _ in range(100))


def test_torchserve_nanosecond_timestamps_parse():
    assert _epoch("2026-11-25T03:16:45.671557840Z") == pytest.approx(1795576605.671557)


async def test_keys_are_reread_when_the_file_changes(tmp_path):
    key_file = tmp_path / "key_file.json"
    keys = TorchServeKeys(key_file, "http://127.0.0.1:1", 300, settle_s=0.1)
    with pytest.raises(KeysUnavailable):
        await keys.read()
    for key in ("aaaa1111", "bbbb2222"):
        key_file.write_text(json.dumps({"inference": {"key": key, "expiration time": "2099-01-01T00:00:00.000Z"},
                                        "management": {"key": "m", "expiration time": "2099-01-01T00:00:00Z"},
                                        "API": {"key": "x"}}))
        keys.reload()
        read = await keys.read()
        assert read.inference == key and read.management == "m"
    key_file.write_text("{")  # TorchServe mid-write for longer than settle_s
    keys.reload()
    with pytest.raises(KeysUnavailable):
        await keys.read()


def test_forwarded_headers_fix_the_content_type_and_drop_credentials():
    sent = forwarded_headers({"Authorization": "Bearer t", "access_token": "t", "Host": "h", "Accept": "image/png",
                              "Content-Type": "application/x-www-form-urlencoded", "Keep-Alive": "5"}, "rid")
    assert sent == {"Accept": "image/png", "Content-Type": "application/octet-stream", "X-Request-ID": "rid"}
    assert forwarded_headers({"Content-Type": "image/jpeg"}, "r")["Content-Type"] == "image/jpeg"


def test_returned_headers_drop_hop_by_hop():
    kept = returned_headers({"connection": "keep-alive", "Content-Length": "3", "x-model-degree": "90"})
    assert list(kept.items()) == [("x-model-degree", "90")] and kept["X-Model-Degree"] == "90"


def test_settings_from_environment():
    settings = ProxySettings.from_env({"PROXY_PORT": "9000", "PROXY_TOKEN_DB": "/tmp/t.db", "PROXY_JWT_SECRET": "s",
                                       "PROXY_JWT_AUDIENCE": "aud", "PROXY_RATE_LIMIT_PER_S": "5", "UNRELATED": "x"})
    assert settings.port == 9000 and settings.token_db == Path("/tmp/t.db") and settings.rate_limit_per_s == 5
    assert settings.jwt.enabled and settings.jwt.algorithms == ("HS256",) and settings.jwt.audience == "aud"
    assert "secret" not in repr(settings)  # the shared secret never lands in a log line
    assert ProxySettings.from_env({}) == ProxySettings()


def test_every_setting_is_read_from_its_own_variable():
    samples = {str: "x", int: "7", float: "0.25", Path: "/tmp/p", bool: "false"}
    environ, expected = {}, {}
    hints = typing.get_type_hints(ProxySettings)
    for spec in dataclasses.fields(ProxySettings):
        if spec.name != "jwt":
            kind = next(arg for arg in typing.get_args(hints[spec.name]) or (hints[spec.name],)
                        if arg is not type(None))  # Path | None: a Path
            kind = Path if issubclass(kind, Path) else kind
            environ[f"PROXY_{spec.name.upper()}"] = samples[kind]
            expected[spec.name] = False if kind is bool else kind(samples[kind])
    environ.update(PROXY_JWT_PUBLIC_KEY_FILE="/k.pem", PROXY_JWT_ALGORITHMS="ES256, RS256", PROXY_JWT_LEEWAY_S="5")
    settings = ProxySettings.from_env(environ)
    assert {name: getattr(settings, name) for name in expected} == expected
    assert settings.jwt == JwtSettings(public_key_file=Path("/k.pem"), algorithms=("ES256", "RS256"), leeway_s=5.0)


def test_a_malformed_setting_names_its_variable():
    with pytest.raises(ValueError, match="PROXY_PORT='eighty': expected int"):
        ProxySettings.from_env({"PROXY_PORT": "eighty"})
