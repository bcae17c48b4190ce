"""`python -m auth_plugin models ...`: what it asks the admin API and what an operator reads back."""

from __future__ import annotations

import json

import pytest

from auth_plugin.__main__ import main
from auth_plugin.control import models_cli

HISTORY = {"model": "food_rotation", "versions": [], "rollback_target": "1.0", "history": [
    {"seq": 2, "version": "2.0", "archive": "food_rotation-v2.0.mar", "at": 1.8e9, "actor": "ana",
     "action": "promote", "rolled_back": False}]}


@pytest.fixture
def calls(monkeypatch):
    seen = []

    def admin_call(url, model, token, method, path, body=None):
        seen.append((model, method, path, body))
        if path.startswith("/audit"):
            return {"entries": [{"seq": 1, "at": 1.8e9, "actor": "ana", "action": "deploy", "model": "food_rotation",
                                 "detail": {"archive": "x.mar"}, "outcome": "refused 422 gate_refused"}]}
        if method == "GET":
            return HISTORY
        return {"model": "food_rotation", "default": "1.0", "retired": "2.0"}

    monkeypatch.setattr(models_cli, "admin_call", admin_call)
    monkeypatch.setenv("PROXY_ADMIN_TOKEN", "frs_test")
    return seen


def test_rollback_names_its_version_and_says_what_changed(calls, capsys):
    assert main(["models", "rollback", "1.0"]) == 0
    assert calls == [("food_rotation", "POST", "/rollback", {"version": "1.0"})]
    assert capsys.readouterr().out == "default is now 1.0; 2.0 drained and retired\n"
    assert main(["models", "--json", "rollback"]) == 0
    assert calls[-1][3] == {"version": None}
    assert json.loads(capsys.readouterr().out)["default"] == "1.0"


def test_history_and_audit_print_tables(calls, capsys):
    assert main(["models", "history"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("rollback goes to: 1.0\n") and "2.0" in out and "promote" in out and "ana" in out
    assert main(["models", "audit", "--limit", "5"]) == 0
    assert calls[-1][:3] == (None, "GET", "/audit?limit=5")
    assert "refused 422 gate_refused" in capsys.readouterr().out


def test_deploy_and_remove_take_the_path_tab_completion_gives(calls, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PROXY_MODEL_STORE", str(tmp_path))
    monkeypatch.chdir(tmp_path.parent)
    assert main(["models", "--json", "deploy", f"{tmp_path.name}/food_rotation-v2.0.mar"]) == 0
    assert calls[-1][3]["archive"] == "food_rotation-v2.0.mar"
    assert main(["models", "--json", "deploy", "elsewhere/x.mar"]) == 0
    assert calls[-1][3]["archive"] == "elsewhere/x.mar"  # not in the store: sent as given, the proxy says why not
    assert main(["models", "--json", "remove-archive", str(tmp_path / "old v1.mar")]) == 0
    assert calls[-1][1:3] == ("DELETE", "/archives/old%20v1.mar")


def test_deploy_auto_sends_the_policy_asked_for(calls):
    assert main(["models", "--json", "deploy", "v2.mar", "--auto", "--steps", "10,50", "--step-s", "30"]) == 0
    assert calls[-1][3]["auto"] == {"steps": [10.0, 50.0], "step_s": 30.0}
    assert main(["models", "--json", "deploy", "v2.mar", "--auto"]) == 0
    assert calls[-1][3]["auto"] is True
    assert main(["models", "--json", "deploy", "v2.mar"]) == 0
    assert calls[-1][3]["auto"] is None
