"""Temperature scaling and the harm/fix trade-off of `min_confidence`, as pure functions over tensors.

Items are (logits or probabilities, label) with label k meaning "turn CLASSES[k] degrees to make it upright",
so label 0 is an upright photo. What matters to a user is asymmetric: turning an upright photo (harm) is worse
than leaving a turned one alone (a missed fix), so the threshold is chosen under a bound on harm.
Thresholds compare as the handler does (food_rotation/abstention.py): a photo is turned when confidence >= threshold
and, where `agree` is given (require_agreement), its turned views agree.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from food_rotation.rotation_model import CLASSES

MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
_GOLDEN = (math.sqrt(5) - 1) / 2
# Above every probability: the threshold that never turns anything.
NEVER = math.nextafter(1.0, math.inf)


def nll(logits: Tensor, labels: Tensor, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of softmax(logits / T), in float64 so that the search below is smooth."""
    log_probs = torch.log_softmax(logits.double() / temperature, dim=-1)
    return max(0.0, float(-log_probs.gather(1, labels.long().view(-1, 1)).mean()))  # never -0.0


def fit_temperature(logits: Tensor, labels: Tensor, iterations: int = 80) -> float:
    """The T in [0.05, 20] that minimises NLL on (logits, labels).

    NLL is convex in 1/T, so it has one minimum along log T; a golden-section search over log T finds it
    without gradients, step sizes or randomness (same input, same T). 80 steps shrink the bracket below 1e-15.
    """
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0] or logits.shape[0] == 0:
        raise ValueError(f"need (N, C) logits and (N,) labels with N > 0, got {tuple(logits.shape)}, "
                         f"{tuple(labels.shape)}")
    lo, hi = math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)
    a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fa, fb = nll(logits, labels, math.exp(a)), nll(logits, labels, math.exp(b))
    for _ in range(iterations):
        if fa <= fb:  # the minimum is in [lo, b]
            hi, b, fb = b, a, fa
            a = hi - _GOLDEN * (hi - lo)
            fa = nll(logits, labels, math.exp(a))
        else:  # in [a, hi]
            lo, a, fa = a, b, fb
            b = lo + _GOLDEN * (hi - lo)
            fb = nll(logits, labels, math.exp(b))
    return min(MAX_TEMPERATURE, max(MIN_TEMPERATURE, math.exp((lo + hi) / 2)))


def expected_calibration_error(probs: Tensor, labels: Tensor, bins: int = 10) -> float:
    """Sum over equal-width confidence bins (lo, hi] of |accuracy - mean confidence|, weighted by the bin's share."""
    confidence, predicted = probs.double().max(dim=-1)
    correct = (predicted == labels).double()
    index = (torch.ceil(confidence * bins).long() - 1).clamp(0, bins - 1)
    gap = torch.bincount(index, weights=correct, minlength=bins) - torch.bincount(index, weights=confidence,
                                                                                   minlength=bins)
    return float(gap.abs().sum()) / max(1, len(labels))


@dataclass(frozen=True)
class Point:
    """What a threshold does. Shares are of upright photos (harm), of turned photos (fix, wrong_turn), and of
    all items (coverage); accuracy_covered is argmax accuracy over the items at or above the threshold
    (0.0 when none is)."""

    threshold: float
    harm: float
    fix: float
    wrong_turn: float
    coverage: float
    accuracy_covered: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _events(probs: Tensor, labels: Tensor, agree: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor], int, int]:
    """Confidence per item (float64, exactly the float32 value decide() sees; -1, below every threshold, where the
    views disagree) and 0/1 per counted event."""
    if probs.ndim != 2 or probs.shape[1] != len(CLASSES) or probs.shape[0] != labels.shape[0]:
        raise ValueError(f"need (N, {len(CLASSES)}) probabilities and (N,) labels, got {tuple(probs.shape)}, "
                         f"{tuple(labels.shape)}")
    confidence, predicted = probs.max(dim=-1)
    labels = labels.long()
    upright, turned = labels == 0, labels != 0
    events = {
        "harm": upright & (predicted != 0),
        "fix": turned & (predicted == labels),
        "wrong_turn": turned & (predicted != labels) & (predicted != 0),
        "covered": torch.ones_like(upright),
        "correct": predicted == labels,
    }
    confidence = confidence.double()
    if agree is not None:
        confidence = torch.where(agree, confidence, torch.full_like(confidence, -1.0))
    return confidence, events, int(upright.sum()), int(turned.sum())


def _points(confidence: Tensor, events: dict[str, Tensor], n_upright: int, n_turned: int,
            thresholds: Tensor) -> list[Point]:
    """Counts of each event at confidence >= t for every t at once: sort once, then prefix sums."""
    order = confidence.argsort()
    sorted_conf = confidence[order]
    first_at_or_above = torch.searchsorted(sorted_conf, thresholds, right=False)
    at_or_above = {}
    for name, flags in events.items():
        prefix = torch.cat([torch.zeros(1, dtype=torch.long), flags[order].long().cumsum(0)])
        at_or_above[name] = (prefix[-1] - prefix[first_at_or_above]).tolist()
    n = len(confidence)
    return [
        Point(threshold=t, harm=harm / max(1, n_upright), fix=fix / max(1, n_turned),
              wrong_turn=wrong / max(1, n_turned), coverage=covered / max(1, n),
              accuracy_covered=correct / covered if covered else 0.0)
        for t, harm, fix, wrong, covered, correct in zip(
            thresholds.tolist(), at_or_above["harm"], at_or_above["fix"], at_or_above["wrong_turn"],
            at_or_above["covered"], at_or_above["correct"], strict=True)
    ]


def operating_points(probs: Tensor, labels: Tensor, agree: Tensor | None = None) -> list[Point]:
    """One Point per threshold in {0, every distinct confidence, 1}, by rising threshold.

    Between two neighbouring confidences every threshold admits the same items, so these are all there are.
    harm, fix, wrong_turn and coverage never rise as the threshold does.
    """
    confidence, events, n_upright, n_turned = _events(probs, labels, agree)
    thresholds = torch.unique(torch.cat([confidence.clamp(min=0.0), torch.tensor([0.0, 1.0], dtype=torch.float64)]))
    return _points(confidence, events, n_upright, n_turned, thresholds)


def point_at(probs: Tensor, labels: Tensor, threshold: float, agree: Tensor | None = None) -> Point:
    """The Point of any threshold, listed by operating_points or not."""
    confidence, events, n_upright, n_turned = _events(probs, labels, agree)
    return _points(confidence, events, n_upright, n_turned, torch.tensor([float(threshold)], dtype=torch.float64))[0]


def choose_threshold(probs: Tensor, labels: Tensor, max_harm: float = 0.01, agree: Tensor | None = None) -> float:
    """The smallest threshold whose harm <= max_harm: fix never rises with the threshold, so this one fixes most.

    Ties: harm exactly at the bound is allowed; items of equal confidence are admitted or refused together
    (a threshold cannot split them), and the threshold returned is a confidence itself, so `confidence >= t`
    in the handler admits exactly the items counted here. If even 1.0 harms too much (probabilities that
    saturate at 1.0), NEVER is returned: just above 1, nothing is turned.
    """
    for point in operating_points(probs, labels, agree):
        if point.harm <= max_harm:
            return point.threshold
    return NEVER


def confusion(probs: Tensor, labels: Tensor) -> Tensor:
    """counts[true, predicted] of the argmax."""
    k = len(CLASSES)
    flat = labels.long() * k + probs.argmax(dim=-1)
    return torch.bincount(flat, minlength=k * k).view(k, k)


def summary(probs: Tensor, labels: Tensor, threshold: float, bins: int = 10,
            agree: Tensor | None = None) -> dict[str, object]:
    """Every figure evaluate.py reports: argmax accuracy (no abstention), per class (keyed by degree), the
    confusion matrix [true][pred], and harm/fix/wrong_turn/coverage at `threshold`, ECE and n."""
    counts = confusion(probs, labels)
    point = point_at(probs, labels, threshold, agree)
    n = int(counts.sum())
    return {
        "n": n,
        "accuracy": float(counts.diag().sum()) / max(1, n),
        "per_class": {str(degree): float(counts[i, i]) / max(1, int(counts[i].sum()))
                      for i, degree in enumerate(CLASSES)},
        "confusion": counts.tolist(),
        "threshold": float(threshold),
        "harm": point.harm,
        "fix": point.fix,
        "wrong_turn": point.wrong_turn,
        "coverage": point.coverage,
        "accuracy_covered": point.accuracy_covered,
        "ece": expected_calibration_error(probs, labels, bins),
    }
