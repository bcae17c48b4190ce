"""The rule a version ships with (make weights, make retrain): each collected dataset is one more source group, a
model that cannot refit its head is scored as it is under the same rule, and no harmless threshold means no
version."""

from __future__ import annotations

import pytest
import torch

from food_rotation.rotation_model import RotationNet
from food_rotation.training.leave_one_source_out import Answers, GroupAnswers
from food_rotation.training.source_evaluation import RealPhotos
from food_rotation.training.source_rule import (
    NoHarmlessThreshold,
    _rule,
    as_it_is,
    refits_its_head,
    source_rule,
    with_corrections,
)
from tests.photos import encode, real_sources, scene


def test_each_dataset_is_a_source_group_whose_held_out_photos_are_scored_never_fitted(tmp_path):
    real = RealPhotos.under(real_sources(tmp_path / "real", ("mate", "lomiri"), per_source=2))
    train, held_out = tmp_path / "t.jpg", tmp_path / "h.jpg"
    for path, seed in ((train, 1), (held_out, 2)):
        path.write_bytes(encode(scene(seed)))
    both = with_corrections(real, {"feedback-1": ([train], [held_out])})
    assert both.photos == [*real.photos, train, held_out]
    assert both.groups[-2:] == ["corrections-feedback-1"] * 2 and both.kinds[-2:] == ["upright", "upright"]
    assert both.trainable[-2:] == [True, False] and both.fitted("upright")[-1] == len(real.photos)
    assert real.photos == both.photos[:-2]  # the shipped sources are left as they were


def test_a_model_that_cannot_refit_its_head_is_scored_as_it_is_under_the_same_rule(tmp_path):
    torch.manual_seed(0)
    net = RotationNet("mobilenet_v3_small").eval()
    assert not refits_its_head(net) and refits_its_head(RotationNet("efficientnet_lite0", turn_averaging=True))
    photos = RealPhotos.under(real_sources(tmp_path / "real", ("mate", "lomiri", "interiors"), per_source=2))
    rule = as_it_is(net, 64, photos, 0.01)
    assert rule.head is None and not rule.left_out and rule.summary.groups == 3
    assert rule.summary.worst_harm <= 0.01 and 0 <= rule.threshold <= 1
    assert rule.record(0.01)["food_accuracy"] is None  # no food group: none, not NaN (JSON has no NaN)
    assert rule.record(0.01)["how"] == "as it is, per source group (not left out)"
    assert source_rule(net, 64, photos, 0.01, augmentations=0).threshold == rule.threshold


def test_no_threshold_keeps_a_group_harmless_when_its_upright_photos_are_turned_at_full_confidence():
    sure = torch.full((4, 4), -1e4)
    sure[:, 1] = 0.0  # every item "surely" needs a 90-degree turn: the upright one too
    hopeless = GroupAnswers("food-D", 1, Answers(sure, torch.arange(4), torch.ones(4, dtype=torch.bool)), None)
    fine = torch.full((4, 4), -5.0)
    fine[torch.arange(4), torch.arange(4)] = 0.0
    harmless = GroupAnswers("mate", 1, Answers(fine, torch.arange(4), torch.ones(4, dtype=torch.bool)), None)
    assert _rule([harmless], 0.01, None, left_out=True).summary.worst_harm == 0
    with pytest.raises(NoHarmlessThreshold, match="on food-D"):
        _rule([harmless, hopeless], 0.01, None, left_out=True)
