import asyncio
import json
import random
import zipfile

import pytest

from auth_plugin.control.archive_catalogue import ArchiveError, ArchiveInfo, read_archive
from auth_plugin.control.desired.versions import Route, VersionRegistry


@pytest.fixture
def registry(open_db):
    registry = VersionRegistry(open_db(), rng=random.Random(0))
    yield registry
    registry.close()


def test_routes_and_versions_survive_a_new_process(open_db, registry):
    registry.add_version("m", "1.0", "m.mar")
    registry.add_version("m", "2.0", "m-v2.mar")
    registry.set_route("m", Route(default="1.0").with_canary("2.0", 25))
    registry.set_route("m", registry.route("m").with_canary("2.0", 33.3))  # replaces the row: one route a model
    registry.add_version("m", "1.0", "m.mar")  # deployed again: it moves after 2.0
    again = VersionRegistry(open_db())
    assert list(again.versions("m").items()) == [("2.0", "m-v2.mar"), ("1.0", "m.mar")]
    assert again.route("m") == Route(default="1.0", canary="2.0", canary_percent=33.3)  # a double, not a float4
    registry.remove_version("m", "2.0")
    assert VersionRegistry(open_db()).versions("m") == {"1.0": "m.mar"}
    again.close()


async def test_a_gateway_follows_the_routes_another_one_writes(open_db, registry):
    registry.add_version("m", "1.0", "m.mar")
    registry.set_route("m", Route(default="1.0"))
    other = VersionRegistry(open_db())  # a second gateway on the same database, predictions only
    assert other.route("m") == Route(default="1.0") and not other.knows("m", "2.0")
    registry.add_version("m", "2.0", "m-v2.mar")
    registry.set_route("m", Route(default="1.0").with_canary("2.0", 10))
    assert other.route("m") == Route(default="1.0")  # cached: a request never waits on the database
    follower = asyncio.create_task(other.follow(0.05))
    await asyncio.sleep(0.3)
    follower.cancel()
    assert other.route("m").canary == "2.0" and other.knows("m", "2.0")
    other.close()


def test_a_refresh_never_undoes_a_write_of_this_process(registry, monkeypatch):
    registry.set_route("m", Route(default="1.0"))
    read = registry._read_route

    def write_meanwhile(model):  # this process writes between the refresh's read and its update of the cache
        stale = read(model)
        registry.set_route(model, Route(default="2.0"))
        return stale

    monkeypatch.setattr(registry, "_read_route", write_meanwhile)
    registry.refresh()
    assert registry.route("m") == Route(default="2.0")


def test_canary_share_is_honoured(registry):
    registry.set_route("m", Route(default="1.0").with_canary("2.0", 30))
    picks = [registry.choose("m") for _ in range(4000)]
    assert 0.27 < picks.count("2.0") / len(picks) < 0.33
    registry.set_route("m", registry.route("m").with_canary(None, 0))
    assert {registry.choose("m") for _ in range(100)} == {"1.0"}
    assert registry.choose("unknown") is None


def test_in_flight_is_counted_per_version(registry):
    with registry.in_flight("m", "1.0"), registry.in_flight("m", "1.0"):
        assert registry.in_flight_count("m", "1.0") == 2 and registry.in_flight_count("m", "2.0") == 0
    assert registry.in_flight_count("m", "1.0") == 0


def _mar(path, name="food_rotation", version="2.0"):
    with zipfile.ZipFile(path, "w") as mar:
        mar.writestr("MAR-INF/MANIFEST.json", json.dumps({"model": {"modelName": name, "modelVersion": version}}))
        mar.writestr("metadata.json", json.dumps({"arch": "resnet18", "val_acc": 0.9}))


def test_read_archive(tmp_path):
    _mar(tmp_path / "v2.mar")
    assert read_archive(tmp_path, "v2.mar") == ArchiveInfo("food_rotation", "2.0", {"arch": "resnet18", "val_acc": 0.9})


@pytest.mark.parametrize(("name", "status"), [("../v2.mar", 400), ("/etc/v2.mar", 400), ("a/v2.mar", 400),
                                              ("file:///x.mar", 400), ("http://h/x.mar", 400), ("v2.zip", 400),
                                              ("missing.mar", 404), ("broken.mar", 400)])
def test_read_archive_refusals(tmp_path, name, status):
    (tmp_path / "broken.mar").write_bytes(b"not a zip")
    with pytest.raises(ArchiveError) as caught:
        read_archive(tmp_path, name)
    assert caught.value.status == status


@pytest.mark.parametrize(("metadata", "names"), [
    ({"datasets": [{"name": "feedback-1"}, {"name": "feedback-2"}]}, ["feedback-1", "feedback-2"]),
    ({"dataset": {"name": "feedback-1", "manifest_sha256": "ab"}}, ["feedback-1"]),  # archived before `datasets`
    ({"arch": "resnet18"}, []),
    ({"datasets": "feedback-1"}, []),  # not what retrain writes: no dataset to gate on rather than a wrong one
])
def test_the_datasets_an_archive_was_retrained_on(metadata, names):
    described = ArchiveInfo("food_rotation", "2.0", {**metadata, "heldout_acc": 0.95}).trained_on()
    assert described == {"datasets": names, "heldout_acc": 0.95}
