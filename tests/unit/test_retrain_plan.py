"""What `make retrain` says before it trains: the plan, and whether the corrections suffice."""

from __future__ import annotations

import pytest

from operations.retrain_plan import Plan, gate_scores


def plan(corrections: int, held_out: int, canary: float | None = 10.0) -> Plan:
    return Plan("food_rotation", "2.0", "feedback-1", corrections, held_out, 200, "1.0 (food_rotation.mar)", 4,
                canary)


@pytest.mark.parametrize(("corrections", "held_out", "enough", "said"), [
    (5, 1, False, "not enough: at least 8 training and 1 held-out correction"),
    (12, 0, False, "not enough"),
    (12, 3, True, "too few to expect a measurable change"),
    (30, 8, True, "the gate passed 1 version in 3"),
    (60, 15, True, "enough: at 50+ corrections"),
])
def test_the_verdict_follows_the_measured_bars(corrections, held_out, enough, said):
    judged = plan(corrections, held_out)
    assert judged.enough is enough
    assert said in judged.verdict()


def test_a_small_held_out_split_is_called_coarse_with_the_weight_of_one_photo():
    assert "rests on 4 photo(s), each 25 points" in plan(30, 4).verdict()
    assert "rests on" not in plan(60, 15).verdict()


def test_the_plan_names_the_start_the_counts_and_what_follows():
    deployed, kept = plan(30, 8).lines(), plan(30, 8, canary=None).lines()
    assert deployed[0].startswith("plan: fine-tune 1.0 (food_rotation.mar) for 4 epochs on 30 corrections")
    assert "8 corrections held out" in deployed[0] and "deploy it as a 10% canary" in deployed[0]
    assert "--no-deploy: not deployed" in kept[0]
    assert "choose its threshold leaving one source out" in kept[0]
    assert deployed[1].startswith("data: ")


def test_the_deploy_line_names_every_set_the_gate_scored_beside_the_default():
    deployed = {"version": "2.0", "gate_accuracy": 1.0, "gate_default_accuracy": 1.0, "real_accuracy": 0.8333,
                "real_default_accuracy": 0.8125, "real_harm": 0.0, "heldout_accuracy": 0.96875}
    assert gate_scores(deployed) == ("samples 1.000 (default 1.000), real photos 0.833 (default 0.812), "
                                     "held-out corrections 0.969")
    assert gate_scores({**deployed, "unseen_worst_harm": 0.004}).endswith(
        ", worst harm on sources it never saw 0.4%")
    assert gate_scores({"gate_accuracy": 0.9}) == "samples 0.900"  # a rollback: nothing compared
