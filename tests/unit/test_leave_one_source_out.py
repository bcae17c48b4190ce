"""Leave one source out: the cached frozen features give exactly the served net's answers, a group's head never
sees the group, the shipped threshold holds on every group, and the source groups and no-up list are real."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import pytest
import torch
from PIL import Image

from food_rotation.photo_io import load_upright, turn
from food_rotation.rotation_model import CLASSES, RotationNet, to_pixels
from food_rotation.training.frozen_features import photo_features, turned_view_log_probs
from food_rotation.training.leave_one_source_out import (
    Answers,
    GroupAnswers,
    HeadRecipe,
    figures_at,
    group_threshold,
    out_of_group,
    shipped_threshold,
    wilson_upper,
)
from food_rotation.training.photo_sources import is_food, no_up_labels, source_group
from food_rotation.training.rotation_data import MAX_TRAINING_PIXELS
from tests.conftest import ROOT
from tests.photos import encode, scene


@pytest.mark.parametrize("shape", [(96, 96), (120, 80)], ids=["square", "wide"])
@torch.inference_mode()
def test_cached_features_answer_as_the_turn_averaged_net_does(tmp_path, shape):
    """Up to resampling: the handler shrinks the turned photo, the cache turns the shrunk one (PIL's reduce()
    drops the remainder at the right and bottom edges, so the two differ by a fraction of a pixel)."""
    torch.manual_seed(0)
    net = RotationNet("efficientnet_lite0", turn_averaging=True).eval()
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(encode(scene(3).resize(shape), "JPEG"))
    size = 64
    cached = turned_view_log_probs(net.head[-1], photo_features(net, [photo], size).features[:, 0])
    img, _ = load_upright(photo.read_bytes(), int(size * 1.2), MAX_TRAINING_PIXELS)
    for label in range(len(CLASSES)):
        pixels = to_pixels(turn(img, -CLASSES[label]), size)[None]  # the photo as the handler gets it turned
        served = net.turned_views(pixels)[0]
        assert torch.allclose(cached[0, label], served, atol=0.03), label
        assert torch.equal(cached[0, label].argmax(-1), served.argmax(-1))


@dataclass(frozen=True)
class RecordingRecipe(HeadRecipe):
    """Fits nothing: remembers which photos each fit was given (feature column 0 holds the photo's index)."""

    fits: list = None  # type: ignore[assignment]

    def fit(self, upright, no_up):
        self.fits.append((sorted({int(v) for v in upright[..., 0].flatten()}),
                          sorted({int(v) for v in no_up[..., 0].flatten()})))
        return torch.nn.Linear(upright.shape[-1], len(CLASSES))


def test_the_head_for_a_group_never_sees_that_group_nor_the_held_out_side():
    groups = ["a", "a", "b", "b", "c", "c"]
    kinds = ["upright", "no_up", "upright", "upright", "upright", "unclear"]
    trainable = [True, True, True, False, True, True]
    features = torch.zeros(6, 2, 4, 8)
    features[..., 0] = torch.arange(6.0).view(6, 1, 1)
    recipe = RecordingRecipe(fits=[])
    answers = out_of_group(features, groups, kinds, trainable, recipe)
    assert [a.group for a in answers] == ["a", "b", "c"] and [a.photos for a in answers] == [1, 2, 1]
    assert recipe.fits == [([2, 4], []), ([0, 4], [1]), ([0, 2], [1])]  # 3 is held out; 5 is unclear: never
    assert answers[0].no_up is not None and answers[2].no_up is None


def group_answers(name: str, confidence_of_upright: list[float]) -> GroupAnswers:
    """Upright items only, each wrongly called 90 with the given confidence (the views agree)."""
    logits = torch.stack([torch.tensor([1 - c, c, 0.0, 0.0]).clamp(min=1e-6).log() for c in confidence_of_upright])
    n = len(confidence_of_upright)
    return GroupAnswers(name, n, Answers(logits, torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.bool)),
                        None)


def test_the_shipped_threshold_keeps_harm_within_the_bound_on_every_group():
    answers = [group_answers("a", [0.6, 0.7]), group_answers("b", [0.95, 0.5]), group_answers("c", [0.55])]
    threshold = shipped_threshold(answers, 1.0, 0.0, agreement=True)
    assert threshold == pytest.approx(max(group_threshold(a, 1.0, 0.0, True) for a in answers))
    assert all(figures_at(a, threshold, 1.0, True).harmed == 0 for a in answers)
    assert figures_at(answers[1], 0.9, 1.0, True).harmed == 1  # just below b's mistake, it harms


def test_wilson_bound_is_honest_about_small_groups():
    assert wilson_upper(0, 20) == pytest.approx(0.161, abs=1e-3)
    assert wilson_upper(0, 200) < 0.02 and wilson_upper(0, 0) == 1.0 and wilson_upper(5, 5) == 1.0


def test_source_groups_pool_what_is_too_small_and_name_the_food():
    assert source_group("ifct/D/D012.jpg") == "food-D" and source_group("ifct/N/N001.jpg") == "food-NO"
    assert source_group("ifct/A/A008.jpg") == source_group("ifct/Q/Q004.jpg") == "food-other"
    assert source_group("gcompris/explore_monuments-india/taj.jpg") == "gcompris-monuments"
    assert source_group("gcompris/categorization-fishes/x.jpg") == "gcompris-fishes"
    assert source_group("palapeli/castle.jpg") == source_group("puzzle-jigsaw/cat.jpg") == "puzzles"
    assert is_food("food-D") and not is_food("interiors")


def test_every_photo_listed_without_an_up_is_one_make_real_data_extracts():
    manifest = json.loads((ROOT / "data" / "real" / "MANIFEST.json").read_text())
    extracted = {name.removeprefix("photos/") for name in manifest["files"] if name.startswith("photos/")}
    labels = no_up_labels()
    assert len(labels) >= 80 and set(labels) <= extracted
    assert not any(name.startswith(("ifct/B", "ifct/E", "ifct/G", "ifct/P")) for name in extracted)  # evaluation only
    for name in list(extracted)[:3]:
        Image.open(io.BytesIO((ROOT / "data" / "real" / "photos" / name).read_bytes())).verify()
