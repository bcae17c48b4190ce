"""Backup and restore through the CLI, as an operator runs them: the restored run folder serves the same tokens,
routing table and datasets."""

from __future__ import annotations

import os
import subprocess
import sys

from auth_plugin.control.desired.versions import Route, VersionRegistry
from auth_plugin.feedback.datasets import DatasetStore
from auth_plugin.token_store import TokenStore
from tests.conftest import ROOT
from tests.photos import encode, scene


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "auth_plugin", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60)


def test_a_backup_restored_into_a_fresh_run_folder_serves_the_same_state(tmp_path):
    live = {"PROXY_TOKEN_DB": str(tmp_path / "live" / "tokens.sqlite3"),
            "PROXY_DATASETS_DIR": str(tmp_path / "live" / "datasets")}
    store = TokenStore(tmp_path / "live" / "tokens.sqlite3")
    token, record = store.issue("cook", ["predict"], 3600)
    registry = VersionRegistry(tmp_path / "live" / "tokens.sqlite3")
    registry.add_version("food_rotation", "2.0", "food_rotation-v2.0.mar")
    registry.set_route("food_rotation", Route(default="2.0"))
    datasets = DatasetStore(tmp_path / "live" / "datasets", 10**8)
    name, correction, _ = datasets.add(encode(scene(seed=5)), 90, "cook")

    made = _cli("backup", str(tmp_path / "backup"), **live)  # while the live store holds its connections open
    assert made.returncode == 0, made.stderr
    assert _cli("backup", str(tmp_path / "backup"), **live).returncode == 1  # never over an earlier backup
    fresh = {"PROXY_TOKEN_DB": str(tmp_path / "fresh" / "tokens.sqlite3"),
             "PROXY_DATASETS_DIR": str(tmp_path / "fresh" / "datasets")}
    restored = _cli("restore", str(tmp_path / "backup"), **fresh)
    assert restored.returncode == 0 and name in restored.stdout, restored.stderr
    assert _cli("restore", str(tmp_path / "backup"), **fresh).returncode == 1  # never over live data

    again = TokenStore(tmp_path / "fresh" / "tokens.sqlite3")
    assert again.lookup(token) == record
    assert VersionRegistry(tmp_path / "fresh" / "tokens.sqlite3").route("food_rotation").default == "2.0"
    assert DatasetStore(tmp_path / "fresh" / "datasets", 10**8).corrections(name) == [correction]
    for closing in (store, again, registry):
        closing.close()
