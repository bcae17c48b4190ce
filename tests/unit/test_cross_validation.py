"""k-fold cross-validation of a retrain: every training correction scored once, by a model that never saw it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from food_rotation.training.cross_validation import CrossValidation, FoldScore, cross_validate, folds


def photos(count: int) -> list[Path]:
    return [Path(f"/data/{hashlib.sha256(str(i).encode()).hexdigest()}.jpg") for i in range(count)]


def test_every_photo_is_scored_once_and_never_by_a_model_that_trained_on_it():
    corrections = photos(23)
    split = folds(corrections, 5)
    scored = [photo for _, held in split for photo in held]
    assert sorted(scored) == sorted(corrections) and len(split) == 5
    assert all(not set(train) & set(held) and set(train) | set(held) == set(corrections) for train, held in split)
    assert folds(corrections, 5) == split  # stable: the same folds every run
    with pytest.raises(ValueError):
        folds(corrections, 1)


def test_the_pooled_figures_weigh_each_fold_by_its_photos():
    result = CrossValidation((FoldScore(3, 0.0, 1.0), FoldScore(1, 1.0, 0.0)))
    assert (result.pooled("before"), result.pooled("after")) == (0.25, 0.75)
    assert "0.250 -> 0.750" in result.summary() and result.as_json()["folds"][0] == {"photos": 3, "before": 0.0,
                                                                                      "after": 1.0}


def test_each_fold_trains_on_the_others_and_scores_its_own(tmp_path):
    seen = []

    def train_fold(train: list[Path], scored: list[Path], out: Path) -> dict[str, float]:
        assert scored and not set(train) & set(scored)  # trained on the other folds only
        seen.append((len(train), len(scored), out.parent.is_dir()))
        return {"init_val_acc": 0.25, "val_acc": 0.5 + 0.1 * len(seen)}

    result = cross_validate(3, photos(12), train_fold)
    assert [train + scored for train, scored, _ in seen] == [12, 12, 12] and all(ok for *_, ok in seen)
    assert len(result.folds) == 3 and result.pooled("before") == 0.25
