"""The smoke gate compares a new version with the current default on every set, on accuracy and on upright
photos turned, and a refusal names each set, both scores and the next step (issue 14 item 1)."""

from __future__ import annotations

import aiohttp
import pytest

from auth_plugin.control.archive_catalogue import ArchiveInfo
from auth_plugin.control.smoke_gate import GateRefused, SmokeGate, upright_photos
from auth_plugin.torchserve_keys import TorchServeKeys
from tests.conftest import ROOT
from tests.unit.proxy.conftest import FakeTorchServe


@pytest.fixture
async def gate(tmp_path, aiohttp_server):
    fake = FakeTorchServe(tmp_path / "key_file.json")
    upstream = await aiohttp_server(fake.app())
    url = str(upstream.make_url(""))
    async with aiohttp.ClientSession() as session:
        yield fake, SmokeGate(session, TorchServeKeys(fake.key_file, url, 60), url, ROOT / "samples" / "gate",
                              min_accuracy=0.2, real_folder=ROOT / "samples" / "gate", tolerance=0.05, max_photos=2,
                              max_real_photos=3)


async def test_a_version_no_worse_than_the_default_passes_with_every_score(gate):
    fake, smoke = gate
    fake.verdicts = {"1.0": (0, False), "2.0": (0, False)}  # says "upright", unsure: a quarter right, no harm
    scores = await smoke.check("food_rotation", "2.0", baseline="1.0")
    assert scores == {"gate_accuracy": 0.25, "gate_harm": 0.0, "gate_default_accuracy": 0.25, "gate_default_harm": 0.0,
                      "real_accuracy": 0.25, "real_harm": 0.0, "real_default_accuracy": 0.25, "real_default_harm": 0.0}


async def test_a_version_that_turns_upright_photos_the_default_leaves_is_refused_per_set(gate):
    fake, smoke = gate
    fake.verdicts = {"1.0": (0, False), "2.0": (90, True)}
    with pytest.raises(GateRefused) as refused:
        await smoke.check("food_rotation", "2.0", baseline="1.0")
    message = str(refused.value)
    assert "the gate's samples: turns 100.0% of upright photos against the default 1.0's 0.0%" in message
    assert "real photos never trained on: turns 100.0%" in message and "Next step: " in message
    assert (await smoke.check("food_rotation", "2.0"))["gate_harm"] == 1.0  # a rollback compares with nothing


def test_the_gate_takes_its_photos_from_every_source_not_the_first_folder(tmp_path):
    for source in ("fish", "monuments", "wallpapers"):
        for index in range(10):
            (tmp_path / source).mkdir(exist_ok=True)
            (tmp_path / source / f"{index}.jpg").write_bytes(b"")
    (tmp_path / "fish" / "notes.txt").write_text("not a photo")
    chosen = upright_photos(tmp_path, 6)
    assert [p.parent.name for p in chosen] == ["fish", "fish", "monuments", "monuments", "wallpapers", "wallpapers"]
    assert upright_photos(tmp_path, 6) == chosen  # the same photos every time: baselines are cached per set
    assert len(upright_photos(tmp_path, 100)) == 30 and upright_photos(tmp_path / "absent", 6) == []


def test_what_a_version_recorded_on_sources_it_never_saw_is_held_to_as_it_is_served(gate):
    _, smoke = gate
    record = {"threshold": 0.8952, "worst_harm": 0.0, "worst_group": "food-D"}
    served = {"min_confidence": 0.8952, "require_agreement": True}

    def archive(record: dict | None, **handler: object) -> ArchiveInfo:
        return ArchiveInfo("food_rotation", "2.0", {} if record is None else {"evaluation_by_source": record},
                           {**served, **handler})

    assert smoke.check_recorded(archive(record)) == {"unseen_worst_harm": 0.0}
    assert smoke.check_recorded(archive(None, min_confidence=0.0)) == {}  # nothing recorded (the demo weights)
    refusals = {
        "turns 2.0% of the upright photos of food-D, above 1.0%": archive({**record, "worst_harm": 0.02}),
        "serves min_confidence 0.5, below the 0.8952": archive(record, min_confidence=0.5),
        "require_agreement: false": archive(record, require_agreement=False),
        "is incomplete": archive({"worst_harm": 0.0}),
    }
    for said, refused in refusals.items():
        with pytest.raises(GateRefused, match=said):
            smoke.check_recorded(refused)
