"""Every gateway setting is documented where users look, from the code itself; make serve honours the address."""

from __future__ import annotations

from auth_plugin.settings import ProxySettings
from auth_plugin.settings_table import markdown, rows
from tests.conftest import ROOT


def test_the_docs_carry_the_table_the_code_makes():
    assert markdown() in (ROOT / "docs" / "configuration.md").read_text(), \
        "docs/configuration.md is stale: paste `.venv/bin/python -m auth_plugin settings` into it"


def test_every_setting_says_what_it_is_for():
    undocumented = [name for name, _, meaning in rows() if not meaning]
    assert undocumented == [], "give each setting a comment beside it in auth_plugin/settings.py"
    assert {"PROXY_HOST", "PROXY_PORT", "PROXY_JWT_SECRET", "PROXY_CONTROL_PLANE"} <= {name for name, _, _ in rows()}


def test_the_address_make_serve_binds_and_the_one_its_curl_calls():
    wildcard = ProxySettings.from_env({"PROXY_HOST": "0.0.0.0", "PROXY_PORT": "9090"})
    assert (wildcard.url(), wildcard.url(for_callers=True)) == ("http://0.0.0.0:9090", "http://127.0.0.1:9090")
    assert ProxySettings.from_env({"PROXY_HOST": "::1"}).url() == "http://[::1]:8080"
    assert ProxySettings.from_env({}).url(for_callers=True) == "http://127.0.0.1:8080"
