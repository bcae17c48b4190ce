"""k-fold cross-validation of a retrain on few corrections (`make retrain RETRAIN_ARGS="--cross-validate 5"`).

With 20 corrections the held-out fifth is about 4 photos, each 25 points of its score: too coarse to tell a better
version from luck (bench/FEEDBACK_LOOP.md). Cross-validation scores every training correction once, each by a
model that did not see it: fold i fine-tunes the starting weights exactly as the retrain will (same trainer,
epochs and demo scenes) on the other folds, and scores fold i before and after. Pooled over the folds (every
correction counted once) that estimates what the retrain does for photos of that kind, with the folds' spread.
It costs k more trainings; the version itself is still trained on every training correction and gated on the
held-out fifth, which no fold ever sees.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# (training photos, scored photos, checkpoint path) -> the trainer's result: "init_val_acc" and "val_acc"
TrainFold = Callable[[list[Path], list[Path], Path], dict[str, Any]]


@dataclass(frozen=True)
class FoldScore:
    photos: int
    before: float
    after: float


@dataclass(frozen=True)
class CrossValidation:
    folds: tuple[FoldScore, ...]

    def pooled(self, field: str) -> float:
        """Accuracy over every scored correction, as if all folds were one held-out set."""
        photos = sum(fold.photos for fold in self.folds)
        return sum(getattr(fold, field) * fold.photos for fold in self.folds) / photos if photos else float("nan")

    def summary(self) -> str:
        photos = sum(fold.photos for fold in self.folds)
        each = ", ".join(f"{fold.before:.2f}->{fold.after:.2f} ({fold.photos})" for fold in self.folds)
        return (f"cross-validation, {len(self.folds)} folds of {photos} training corrections: accuracy on corrections "
                f"the fold's model never saw {self.pooled('before'):.3f} -> {self.pooled('after'):.3f} "
                f"(each fold before->after, photos: {each})")

    def as_json(self) -> dict[str, Any]:
        return {"folds": [asdict(fold) for fold in self.folds], "before": self.pooled("before"),
                "after": self.pooled("after")}


def fold_of(photo: Path, k: int) -> int:
    """Stable, and independent of the held-out choice (which uses the photo's own sha256 digits)."""
    return int(hashlib.sha256(photo.stem.encode()).hexdigest()[:8], 16) % k


def folds(photos: Sequence[Path], k: int) -> list[tuple[list[Path], list[Path]]]:
    """(train, scored) for each non-empty fold: every photo is scored exactly once, never by a model it trained."""
    if k < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    split = []
    for index in range(k):
        scored = [photo for photo in photos if fold_of(photo, k) == index]
        if scored:
            split.append(([photo for photo in photos if fold_of(photo, k) != index], scored))
    return split


def cross_validate(k: int, photos: Sequence[Path], train_fold: TrainFold) -> CrossValidation:
    scores = []
    for index, (train, scored) in enumerate(folds(photos, k), 1):
        with tempfile.TemporaryDirectory() as scratch:
            result = train_fold(train, scored, Path(scratch) / "fold.tar")
        scores.append(FoldScore(len(scored), float(result["init_val_acc"]), float(result["val_acc"])))
        print(f"fold {index}: {len(train)} corrections trained on, {len(scored)} scored: "
              f"{scores[-1].before:.3f} -> {scores[-1].after:.3f}", flush=True)
    return CrossValidation(tuple(scores))
