"""Answer ids: what the gateway signed is what a correction counts as, once, while it is fresh; nothing else."""

from __future__ import annotations

from auth_plugin.answer_receipts import Answered, AnswerReceipts
from tests.fake_clock import Clock


def test_an_answer_id_vouches_for_its_version_and_turn_once_while_fresh():
    clock = Clock()
    receipts = AnswerReceipts(b"k" * 32, lifetime_s=60, clock=clock)
    answer_id = receipts.issue("2.0", 90)
    assert receipts.verify(answer_id) == Answered("2.0", 90)
    assert receipts.redeem(answer_id) and not receipts.redeem(answer_id)
    clock.now += 61
    assert receipts.verify(answer_id) is None  # stale: no longer evidence of what is served now


def test_a_forged_changed_or_foreign_id_vouches_for_nothing():
    receipts = AnswerReceipts(b"k" * 32)
    version, degree, issued, nonce, tag = receipts.issue("2.0", 90).split(":")
    assert receipts.verify(f"{version}:0:{issued}:{nonce}:{tag}") is None  # another turn claimed
    assert receipts.verify(f"3.0:{degree}:{issued}:{nonce}:{tag}") is None  # another version claimed
    assert receipts.verify(AnswerReceipts(b"x" * 32).issue("2.0", 90)) is None  # another gateway's key
    assert AnswerReceipts(b"k" * 32).verify(f"{version}:{degree}:{issued}:{nonce}:{tag}") == Answered("2.0", 90)
    for junk in (None, 7, "", "2.0:90", "2.0:45:1:" + "a" * 16 + ":" + "b" * 22, "x" * 10_000):
        assert receipts.verify(junk) is None


def test_used_ids_are_forgotten_only_once_they_are_stale():
    clock = Clock()
    receipts = AnswerReceipts(b"k" * 32, lifetime_s=60, max_remembered=1000, clock=clock)
    ids = [receipts.issue("2.0", 0) for _ in range(50)]
    assert all(receipts.redeem(answer_id) for answer_id in ids)
    clock.now += 30
    assert not any(receipts.redeem(answer_id) for answer_id in ids)
    clock.now += 31
    receipts.redeem(receipts.issue("2.0", 0))
    assert len(receipts._used) == 1  # the stale ones are gone; verify refuses them anyway
