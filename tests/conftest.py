"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from operations.torchserve_process import TorchServe
from tests.postgres import PostgresServer, bin_dir
from tests.stack import build_archive, every_guess_config, running_torchserve

ROOT = Path(__file__).resolve().parents[1]
DEMO_WEIGHTS = ROOT / "weights" / "food_rotation_demo.pth"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `last` run after every other, whatever their file is called (a stable sort keeps the rest)."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


@pytest.fixture(scope="session")
def demo_weights() -> Path:
    if not DEMO_WEIGHTS.is_file():
        pytest.fail(f"{DEMO_WEIGHTS} is missing: it ships with the repo (make demo-weights rebuilds it)")
    return DEMO_WEIGHTS


@pytest.fixture(scope="session")
def demo_metadata(demo_weights: Path) -> dict:
    return json.loads(demo_weights.with_suffix(".json").read_text())


@pytest.fixture
def weights_copy(tmp_path: Path, demo_weights: Path) -> Path:
    """The demo weights and their .json in a scratch folder that a test may spoil."""
    target = tmp_path / "weights" / demo_weights.name
    target.parent.mkdir()
    shutil.copy(demo_weights, target)
    shutil.copy(demo_weights.with_suffix(".json"), target.with_suffix(".json"))
    return target


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL for the session, started (about 2 s) only when a test asks for it; see tests/postgres.py."""
    binaries = bin_dir()
    if binaries is None:
        pytest.fail("PostgreSQL's server is not installed: scripts/ensure_postgres.sh installs it (make test runs it)")
    server = PostgresServer(binaries)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def torchserve(tmp_path_factory, demo_weights: Path) -> Iterator[TorchServe]:
    """The session's one TorchServe, serving the demo weights as food_rotation 1.0 (started only when a test asks
    for it). Modules that change what is served take a model of their own on it (tests/stack.py)."""
    base = tmp_path_factory.mktemp("torchserve")
    build_archive(demo_weights, "1.0", base / "model_store", config=every_guess_config(base / "config"))
    with running_torchserve(base / "home", base / "model_store") as server:
        yield server
