"""The dataset store on disk: photos kept upright, duplicates counted, the manifest the only truth."""

from __future__ import annotations

import io
import json
import threading

import pytest
from PIL import Image

from auth_plugin.database import AdvisoryLock
from auth_plugin.feedback.datasets import DatasetError, DatasetStore, Quota
from auth_plugin.feedback.splits import is_held_out, union
from auth_plugin.migrations import open_database
from auth_plugin.settings import ProxySettings
from food_rotation.photo_io import PhotoError
from tests.photos import encode, jpeg_with_orientation, rotated, same_picture, scene

LIMIT = 100_000_000


@pytest.fixture
def store(tmp_path) -> DatasetStore:
    return DatasetStore(tmp_path / "datasets", LIMIT, photo_side=512, thumb_side=96)


def stored(store: DatasetStore, name: str, sha: str, thumbnail: bool = False) -> Image.Image:
    return Image.open(io.BytesIO(store.photo(name, sha, thumbnail).read_bytes()))


@pytest.mark.parametrize("true_degree", [0, 90, 180, 270])
def test_a_correction_is_stored_upright_small_and_without_exif(store, true_degree):
    upright = scene()
    name, correction, duplicate = store.add(encode(rotated(upright, true_degree)), true_degree, "alice", "1.0", 0)
    assert (name, duplicate, correction.count, correction.true_degree) == ("feedback-1", False, 1, true_degree)
    photo = stored(store, name, correction.sha256)
    assert max(photo.size) <= 512 and not photo.getexif()
    assert same_picture(photo, upright.resize(photo.size))
    assert max(stored(store, name, correction.sha256, thumbnail=True).size) <= 96


def test_the_exif_turn_is_applied_before_the_correction(store):
    upright = scene()
    # Tag 6 turns the stored pixels into a picture that still needs 90 degrees: true_degree counts after EXIF.
    sideways = jpeg_with_orientation(rotated(upright, 90), 6)
    name, correction, _ = store.add(sideways, 90, "alice")
    photo = stored(store, name, correction.sha256)
    assert same_picture(photo, upright.resize(photo.size))


def test_a_duplicate_is_counted_not_stored_twice_and_the_latest_correction_wins(store):
    data = encode(rotated(scene(), 90))
    store.add(data, 90, "alice", "1.0", 0)
    name, again, duplicate = store.add(data, 90, "bob", "1.0", 0)
    assert duplicate and again.count == 2 and again.user == "bob"
    assert len(list((store.root / name / "photos").iterdir())) == 1
    summary = store.summary(name)
    assert (summary["photos"], summary["submissions"], summary["per_class"]["90"]) == (1, 2, 1)
    _, changed, _ = store.add(data, 180, "carol")  # someone corrects the correction
    assert changed.count == 3 and store.summary(name)["per_class"] == {"0": 0, "90": 0, "180": 1, "270": 0}
    assert len((store.root / name / "manifest.jsonl").read_text().splitlines()) == 3


def test_remove_deletes_the_files_and_a_later_copy_counts_afresh(store):
    data = encode(scene())
    name, correction, _ = store.add(data, 0, "alice")
    store.remove(name, correction.sha256, "admin")
    assert store.corrections(name) == []
    assert not list((store.root / name / "photos").iterdir()) and not list((store.root / name / "thumbs").iterdir())
    with pytest.raises(DatasetError) as gone:
        store.remove(name, correction.sha256, "admin")
    assert gone.value.status == 404
    assert store.add(data, 0, "alice")[1].count == 1
    last = json.loads((store.root / name / "manifest.jsonl").read_text().splitlines()[1])
    assert last["event"] == "removed" and last["user"] == "admin"


def test_starting_a_dataset_closes_the_active_one(store):
    first, _, _ = store.add(encode(scene()), 0, "alice")
    assert store.start_new() == "feedback-2" and store.active() == "feedback-2"
    assert store.summary(first)["closed_at"] is not None and store.summary("feedback-2")["closed_at"] is None
    assert store.add(encode(scene(1002)), 90, "alice")[0] == "feedback-2"
    assert store.start_new("kitchen-2026") == "kitchen-2026" and store.names() == [first, "feedback-2",
                                                                                    "kitchen-2026"]
    for name, status in (("kitchen-2026", 409), ("../etc", 400), ("Upper", 400)):
        with pytest.raises(DatasetError) as refused:
            store.start_new(name)
        assert refused.value.status == status


def test_a_crash_while_a_dataset_is_made_never_wedges_feedback(store):
    """Issue 33: a folder made without its dataset.json (the crash) answered 500 to every later POST /datasets and,
    the active dataset closed by then, to every POST /feedback. Now the new one is renamed into place whole, the
    old one closed last, and what a crash left is set aside."""
    first, _, _ = store.add(encode(scene()), 0, "alice")
    (store.root / "feedback-2" / "photos").mkdir(parents=True)  # the crash: no dataset.json
    assert store.start_new() == "feedback-2" and store.active() == "feedback-2"
    assert store.summary(first)["closed_at"] is not None
    assert store.add(encode(scene(1002)), 90, "alice")[0] == "feedback-2"
    assert [p.name.split("-2-")[0] for p in store.root.glob(".broken-*")] == [".broken-feedback"]

    (store.root / "feedback-3").mkdir()  # and at start: half-made folders, a scratch folder never renamed
    scratch = store.root / ".new-feedback-4-x"
    (scratch / "photos").mkdir(parents=True)
    (scratch / "dataset.json").write_text("{}")
    assert DatasetStore(store.root, LIMIT).repair() == [".new-feedback-4-x", "feedback-3"]
    assert store.names() == [first, "feedback-2"] and store.active() == "feedback-2"
    assert len(list(store.root.glob(".broken-*"))) == 3  # kept for a person to look at, never deleted


def test_split_holds_out_by_sha_and_names_the_exact_state(store):
    for seed in range(1001, 1013):
        store.add(encode(scene(seed).resize((160, 120))), 0, "alice")
    split = store.split("feedback-1")
    shas = {c.sha256: c for c in store.corrections("feedback-1")}
    assert len(split.train) + len(split.held_out) == 12
    assert all(is_held_out(path.stem) and path.stem in shas for path in split.held_out)
    assert not any(is_held_out(path.stem) for path in split.train)
    assert store.split("feedback-1").manifest_sha256 == split.manifest_sha256
    store.remove("feedback-1", next(iter(shas)), "admin")
    assert store.split("feedback-1").manifest_sha256 != split.manifest_sha256


def test_several_datasets_are_selected_and_trained_as_one(store):
    assert store.select("all") == []
    photos = [encode(scene(seed).resize((160, 120))) for seed in range(1001, 1021)]
    for photo in photos[:12]:
        store.add(photo, 0, "alice")
    store.start_new()
    for photo in photos[8:]:  # four photos collected again in the new dataset
        store.add(photo, 90, "bob")
    assert store.select("all") == ["feedback-1", "feedback-2"] and store.select("feedback-2") == ["feedback-2"]
    assert store.select(" feedback-2, feedback-1,feedback-2 ") == ["feedback-2", "feedback-1"]
    with pytest.raises(DatasetError) as unknown:
        store.select("feedback-1,nope")
    assert (unknown.value.status, unknown.value.code) == (404, "unknown_dataset")

    first, second = store.split("feedback-1"), store.split("feedback-2")
    both = union([first, second])
    assert union([first]) == first
    assert len(both.train) + len(both.held_out) == 20  # the four in both count once
    assert {p.name for p in both.held_out} == {p.name for p in first.held_out + second.held_out}
    assert not {p.name for p in both.train} & {p.name for p in both.held_out}
    assert both.manifest_sha256 not in (first.manifest_sha256, second.manifest_sha256)


def test_a_line_cut_short_by_a_crash_is_not_an_event(store):
    name, correction, _ = store.add(encode(scene()), 0, "alice")
    with (store.root / name / "manifest.jsonl").open("a") as manifest:
        manifest.write('{"event": "removed", "sha256": "' + correction.sha256[:10])
    assert [c.sha256 for c in store.corrections(name)] == [correction.sha256]


def test_a_bad_photo_is_refused_and_leaves_nothing_behind(store):
    with pytest.raises(PhotoError) as refused:
        store.add(b"\xff\xd8\xff\xe0 not really a jpeg", 0, "alice")
    assert refused.value.status == 400 and refused.value.code == "corrupt_image"
    name = store.active()
    assert store.corrections(name) == [] and not list((store.root / name / "photos").iterdir())


def test_unknown_datasets_and_photos_are_404_and_bad_names_400(store):
    for call, status in ((lambda: store.describe("nope"), 404), (lambda: store.describe("../x"), 400),
                         (lambda: store.photo("feedback-1", "0" * 64, False), 404)):
        with pytest.raises(DatasetError) as refused:
            call()
        assert refused.value.status == status
    store.start_new()
    with pytest.raises(DatasetError) as refused:
        store.photo("feedback-1", "../../etc/passwd", False)
    assert refused.value.status == 400


def test_a_line_cut_short_by_a_crash_loses_nothing_acknowledged_and_bricks_nothing(store, caplog):
    first, _, _ = store.add(encode(scene(seed=1)), 0, "cook")
    manifest = store.root / first / "manifest.jsonl"
    with manifest.open("a") as out:
        out.write('{"event": "correction", "sha256": "ab')  # the disk filled up mid-write
    name, later, _ = store.add(encode(scene(seed=2)), 90, "cook")  # acknowledged: must be kept
    manifest.write_text(manifest.read_text() + "not json at all\n")
    restarted = DatasetStore(store.root, LIMIT)  # after the crash, the proxy starts again and reads the manifest
    held = {c.sha256: c.true_degree for c in restarted.corrections(name)}
    assert len(held) == 2 and held[later.sha256] == 90
    assert restarted.describe(name)["photos"] == 2
    assert "damaged and skipped" in caplog.text
    assert all(line.endswith("}") or line.startswith(("{\"event\": \"correction\", \"sha256\": \"ab", "not json"))
               for line in manifest.read_text().splitlines())


def test_quotas_bound_a_dataset_and_each_user_and_an_admin_drops_one_users_photos(tmp_path):
    store = DatasetStore(tmp_path / "datasets", LIMIT, photo_side=128, thumb_side=32, quota=Quota(5, 3))
    for seed in range(3):
        store.add(encode(scene(seed=seed)), 0, "mallory")
    with pytest.raises(DatasetError) as refused:
        store.add(encode(scene(seed=10)), 0, "mallory")
    assert (refused.value.status, refused.value.code) == (429, "user_quota_exceeded")
    name, _, duplicate = store.add(encode(scene(seed=0)), 0, "mallory")  # a photo already held costs nothing
    assert duplicate
    store.add(encode(scene(seed=11)), 90, "cook")
    store.add(encode(scene(seed=12)), 90, "cook")
    with pytest.raises(DatasetError) as full:
        store.add(encode(scene(seed=13)), 90, "cook")
    assert (full.value.status, full.value.code) == (409, "dataset_full")
    dropped = store.remove_user(name, "mallory", "admin")
    assert len(dropped) == 3 and {c.user for c in store.corrections(name)} == {"cook"}
    reread = DatasetStore(tmp_path / "datasets", LIMIT)  # the manifest says the same as the index
    assert [c.sha256 for c in reread.corrections(name)] == [c.sha256 for c in store.corrections(name)]


def test_an_add_costs_the_same_however_large_the_dataset(store, monkeypatch):
    store.add(encode(scene(seed=1)), 0, "cook")
    monkeypatch.setattr(store, "_events", lambda folder: (_ for _ in ()).throw(AssertionError("manifest re-read")))
    for seed in range(2, 6):
        store.add(encode(scene(seed=seed)), 0, "cook")  # the index answers; the manifest is only appended to
    assert len(store.corrections(store.active())) == 5


def test_two_gateways_on_one_folder_write_one_at_a_time_and_see_each_others_photos(tmp_path, postgres):
    """Pods sharing the datasets' folder (a ReadWriteMany claim) and a PostgreSQL: the quota, duplicates and the
    active dataset hold across both, as if one process wrote everything (without the lock, both stores let 20
    photos in and each sees only its own)."""
    settings = ProxySettings(database_url=postgres.database())
    stores = [DatasetStore(tmp_path / "datasets", LIMIT, photo_side=128, thumb_side=32, quota=Quota(20, 1000),
                           shared=AdvisoryLock(open_database(settings))) for _ in range(2)]
    photos = [encode(scene(seed).resize((96, 72))) for seed in range(30)]
    outcomes: list[str] = []

    def send(store: DatasetStore, batch: list[bytes]) -> None:
        for photo in batch:
            try:
                outcomes.append("duplicate" if store.add(photo, 0, "cook")[2] else "stored")
            except DatasetError as exc:
                outcomes.append(exc.code)

    threads = [threading.Thread(target=send, args=(stores[index % 2], photos[index * 10:(index + 1) * 10]))
               for index in range(3)]
    threads.append(threading.Thread(target=send, args=(stores[1], photos[:10])))  # sent again, through the other
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    held = [{c.sha256 for c in store.corrections("feedback-1")} for store in stores]
    assert held[0] == held[1] and len(held[0]) == 20 and [s.names() for s in stores] == [["feedback-1"]] * 2
    assert sorted(set(outcomes)) <= ["dataset_full", "duplicate", "stored"] and outcomes.count("stored") == 20
    lines = (tmp_path / "datasets" / "feedback-1" / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 20 + outcomes.count("duplicate")  # one whole line per acknowledged event
    started = []
    racers = [threading.Thread(target=lambda store=store: started.append(store.start_new())) for store in stores]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert sorted(started) == ["feedback-2", "feedback-3"] and stores[0].active() == "feedback-3"
    for store in stores:
        store.close()
