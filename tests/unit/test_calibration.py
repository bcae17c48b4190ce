"""food_rotation/training/calibration.py on examples whose answers are known, and evaluate.py's report end to end."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from food_rotation.abstention import averaged, decide
from food_rotation.rotation_model import CLASSES, RotationNet
from food_rotation.training import evaluate
from food_rotation.training.calibration import (
    NEVER,
    choose_threshold,
    expected_calibration_error,
    fit_temperature,
    nll,
    operating_points,
    point_at,
    summary,
)
from tests.photos import encode, scene


def _probs(rows: list[tuple[int, float]]) -> torch.Tensor:
    """One row per item: (predicted class index, its probability); the rest is shared by the other classes."""
    out = torch.empty(len(rows), len(CLASSES))
    for i, (predicted, confidence) in enumerate(rows):
        out[i] = (1 - confidence) / (len(CLASSES) - 1)
        out[i, predicted] = confidence
    return out


# (label, predicted, confidence): 4 upright photos and 4 turned ones; u3 and t2 share confidence 0.8.
_ITEMS = [
    (0, 0, 0.9),  # u1 left alone, rightly
    (0, 1, 0.6),  # u2 would be turned: harm while the threshold is <= 0.6
    (0, 2, 0.8),  # u3 would be turned: harm while the threshold is <= 0.8
    (0, 0, 0.7),  # u4
    (1, 1, 0.95),  # t1 fixed
    (2, 2, 0.8),  # t2 fixed, tied with u3
    (3, 1, 0.7),  # t3 turned to a wrong angle
    (1, 0, 0.5),  # t4 missed: left as it was
]
PROBS = _probs([(predicted, confidence) for _, predicted, confidence in _ITEMS])
LABELS = torch.tensor([label for label, _, _ in _ITEMS])


def _synthetic(n: int, scale: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels drawn from softmax(true logits), so T = 1 calibrates the true logits and T = scale the scaled ones."""
    generator = torch.Generator().manual_seed(seed)
    true_logits = torch.randn(n, len(CLASSES), generator=generator) * 2
    labels = torch.multinomial(torch.softmax(true_logits, dim=1), 1, generator=generator).squeeze(1)
    return true_logits * scale, labels


def test_fit_temperature_recovers_the_scale_of_over_confident_logits():
    logits, labels = _synthetic(20_000, scale=3.0)
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(3.0, abs=0.15)
    assert fit_temperature(logits, labels) == temperature  # deterministic
    assert nll(logits, labels, temperature) < nll(logits, labels, 1.0)
    before = expected_calibration_error(torch.softmax(logits, dim=1), labels)
    after = expected_calibration_error(torch.softmax(logits / temperature, dim=1), labels)
    assert before > 0.1 and after < 0.02


def test_fit_temperature_stays_within_its_bounds():
    labels = torch.arange(40) % len(CLASSES)
    separable = torch.nn.functional.one_hot(labels, len(CLASSES)).float() * 5  # NLL falls as T does, forever
    assert fit_temperature(separable, labels) == pytest.approx(0.05, rel=1e-3)
    coin_flips = torch.zeros(40, len(CLASSES))
    coin_flips[:, 0] = 1e-3  # all but no signal: NLL falls as T rises
    assert fit_temperature(coin_flips, labels) == pytest.approx(20.0, rel=1e-3)
    with pytest.raises(ValueError):
        fit_temperature(torch.zeros(0, len(CLASSES)), torch.zeros(0, dtype=torch.long))


def test_expected_calibration_error_on_hand_counted_bins():
    labels = torch.tensor([0, 0, 0, 0, 1])
    assert expected_calibration_error(_probs([(0, 0.8)] * 5), labels) == pytest.approx(0.0, abs=1e-6)  # 80 % right
    assert expected_calibration_error(_probs([(0, 1.0)] * 5), labels) == pytest.approx(0.2)


def test_operating_points_count_harm_fix_and_wrong_turns_by_hand():
    points = {round(p.threshold, 4): p for p in operating_points(PROBS, LABELS)}
    assert list(points) == [0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0]
    assert (points[0.0].harm, points[0.0].fix, points[0.0].wrong_turn, points[0.0].coverage) == (0.5, 0.5, 0.25, 1.0)
    at_07 = points[0.7]
    assert (at_07.harm, at_07.fix, at_07.wrong_turn, at_07.coverage) == (0.25, 0.5, 0.25, 0.75)
    assert at_07.accuracy_covered == pytest.approx(4 / 6)
    assert (points[0.8].harm, points[0.8].fix) == (0.25, 0.5)  # u3 and t2 (both 0.8) still counted
    assert (points[0.9].harm, points[0.9].fix, points[0.9].coverage) == (0.0, 0.25, 0.25)
    assert (points[1.0].coverage, points[1.0].accuracy_covered) == (0.0, 0.0)
    ordered = list(points.values())
    for field in ("harm", "fix", "wrong_turn", "coverage"):
        values = [getattr(p, field) for p in ordered]
        assert values == sorted(values, reverse=True), field


def test_choose_threshold_allows_harm_at_the_bound_and_never_splits_ties():
    assert choose_threshold(PROBS, LABELS, max_harm=0.5) == 0.0
    assert choose_threshold(PROBS, LABELS, max_harm=0.25) == pytest.approx(0.7)  # harm exactly 1/4 is allowed
    # Below 1/4 u3 must go, and t2 (same confidence) goes with it: the fix rate falls from 1/2 to 1/4.
    strict = choose_threshold(PROBS, LABELS, max_harm=0.2)
    assert strict == pytest.approx(0.9)
    assert point_at(PROBS, LABELS, strict).fix == 0.25
    # The threshold is a confidence itself: the handler's `confidence >= t` admits exactly what was counted.
    assert strict == float(PROBS[0].max())


def test_choose_threshold_never_turns_when_even_certainty_harms():
    probs, labels = _probs([(1, 1.0), (1, 1.0)]), torch.tensor([0, 1])
    assert choose_threshold(probs, labels, max_harm=0.01) == NEVER
    assert point_at(probs, labels, NEVER).harm == 0.0 and point_at(probs, labels, 1.0).harm == 1.0


def test_items_whose_views_disagree_are_never_covered_so_the_bar_can_fall():
    """require_agreement: u2 and u3 (the harmful ones) disagree, so no bar is needed to keep harm at 0."""
    agree = torch.tensor([True, False, False, True, True, True, True, True])
    assert point_at(PROBS, LABELS, 0.0, agree).harm == 0.0 and point_at(PROBS, LABELS, 0.0).harm == 0.5
    assert choose_threshold(PROBS, LABELS, max_harm=0.0, agree=agree) == 0.0
    assert choose_threshold(PROBS, LABELS, max_harm=0.0) > 0.8
    assert all(p.threshold >= 0 for p in operating_points(PROBS, LABELS, agree))
    assert summary(PROBS, LABELS, 0.0, agree=agree)["coverage"] == 0.75


def test_the_turned_views_average_to_the_turn_averaged_answer_and_a_featureless_photo_disagrees():
    torch.manual_seed(0)
    net = RotationNet("efficientnet_lite0", turn_averaging=True).eval()
    pixels = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        views = net.turned_views(pixels)
        assert views.shape == (2, 4, 4) and torch.allclose(views.mean(dim=1), net(pixels), atol=1e-6)
        logits, agree = averaged(views)
        assert torch.equal(logits, views.mean(dim=1)) and agree.shape == (2,)
        _, flat = averaged(net.turned_views(torch.full((1, 3, 64, 64), 128, dtype=torch.uint8)))
    assert not flat.item()  # the same picture at every turn: each view names a different turn of the photo
    single = torch.randn(3, 4)
    assert torch.equal(averaged(single)[0], single) and averaged(single)[1].all()
    sure = torch.tensor([0.01, 0.97, 0.01, 0.01])
    assert decide(sure, 0.9, views_agree=False, require_agreement=True).trusted is False
    assert decide(sure, 0.9, views_agree=False).trusted is True and decide(sure, 0.9).views_agree is True


def test_summary_confusion_matrix_and_figures_at_the_threshold():
    float32_07 = float(torch.tensor(0.7))  # what the handler's float(probability) is for these items
    figures = summary(PROBS, LABELS, threshold=float32_07)
    assert figures["confusion"] == [[2, 1, 1, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0]]  # [true][pred]
    assert figures["n"] == 8 and figures["accuracy"] == 0.5
    assert figures["per_class"] == {"0": 0.5, "90": 0.5, "180": 1.0, "270": 0.0}
    assert (figures["harm"], figures["fix"], figures["wrong_turn"], figures["coverage"]) == (0.25, 0.5, 0.25, 0.75)
    assert figures["ece"] == expected_calibration_error(PROBS, LABELS)
    # Like the handler's `confidence >= min_confidence`: 0.7 from a YAML file is above float32's 0.69999999.
    assert summary(PROBS, LABELS, threshold=0.7)["coverage"] == 0.5


def _untrained_model(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "w.pth"
    torch.save(RotationNet("mobilenet_v3_small").state_dict(), weights)
    weights.with_suffix(".json").write_text(json.dumps({"arch": "mobilenet_v3_small", "classes": list(CLASSES),
                                                        "image_size": 32}))
    return weights


def _photo_folder(path, seeds):
    path.mkdir()
    for seed in seeds:
        (path / f"p{seed}.jpg").write_bytes(encode(scene(seed).resize((64, 48)), "JPEG"))
    return path


def test_evaluate_pools_folders_fits_the_temperature_and_draws_the_curve(tmp_path, capsys):
    weights = _untrained_model(tmp_path)
    first, second = _photo_folder(tmp_path / "a", range(3)), _photo_folder(tmp_path / "b", range(3, 5))
    config = tmp_path / "model-config.yaml"
    config.write_text("handler:\n  min_confidence: 0.3\n")
    report, curve, matrix = tmp_path / "out.json", tmp_path / "harm_fix.png", tmp_path / "confusion.png"
    assert evaluate.main([str(weights), str(first), str(second), "--config", str(config), "--fit-temperature",
                          "--write-temperature", "--curve", str(curve), "--matrix", str(matrix),
                          "--json", str(report), "--threads", "1", "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    for text in ("fitted temperature", "overall accuracy", "true\\pred", "harm", "fix", "wrong turn", "coverage",
                 "ECE", "harm <= 1.00% from min_confidence"):
        assert text in out, text
    figures = json.loads(report.read_text())
    assert {"model", "data", "photos", "temperature", "temperature_source", "min_confidence",
            "min_confidence_source", "n", "accuracy", "per_class", "confusion", "threshold", "harm", "fix",
            "wrong_turn", "coverage", "accuracy_covered", "ece", "max_harm", "suggested", "calibration"} <= set(figures)
    assert figures["photos"] == 5 and figures["n"] == 20 and sum(map(sum, figures["confusion"])) == 20
    assert figures["min_confidence"] == 0.3 and figures["suggested"]["harm"] <= 0.01
    sidecar = json.loads(weights.with_suffix(".json").read_text())
    assert sidecar["temperature"] == figures["temperature"] and sidecar["arch"] == "mobilenet_v3_small"
    assert set(sidecar["calibration"]) == {"data", "n", "temperature_before", "nll_before", "nll_after",
                                           "ece_before", "ece_after"}
    assert sidecar["calibration"]["nll_after"] <= sidecar["calibration"]["nll_before"]
    assert Image.open(curve).format == "PNG" and Image.open(matrix).format == "PNG"

    # The next run reads the stored temperature; an unset min_confidence trusts every prediction.
    config.write_text("handler:\n  torch_threads: 1\n")
    assert evaluate.main([str(weights), str(first), "--config", str(config), "--json", str(report),
                          "--threads", "1"]) == 0
    figures = json.loads(report.read_text())
    assert figures["temperature"] == sidecar["temperature"]
    assert figures["temperature_source"] == str(weights.with_suffix(".json"))
    assert figures["min_confidence"] == 0.0 and figures["coverage"] == 1.0 and figures["calibration"] is None
