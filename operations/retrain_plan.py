"""What a retrain will do, and whether the collected corrections suffice, said before any training starts.

The bars come from bench/FEEDBACK_LOOP.md (three splits each, a new kind of photo, 200 demo scenes mixed in):
20 corrections took held-out photos of that kind from 0.39 to 0.83, but the gate passed 1 version of 3; 50 took
them from 0.37 to 0.84 and the gate passed 2 of 3. Below MIN_TRAINING_PHOTOS a retrain is refused outright.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MIN_TRAINING_PHOTOS = 8
HELPS_FROM = 20  # corrections of one kind that measurably help (bench/FEEDBACK_LOOP.md)
USUALLY_ENOUGH = 50  # corrections at which the gate usually passes the new version
COARSE_HELD_OUT = 10  # held-out photos below which one photo moves the gate's score by 10 points or more
GATE_SETS = (("gate", "samples"), ("real", "real photos"), ("heldout", "held-out corrections"))  # smoke_gate.py's keys


def shortfall(corrections: int, held_out: int) -> str | None:
    """Why a retrain cannot run on this data at all (retrain.py refuses before anything else), or None."""
    if corrections >= MIN_TRAINING_PHOTOS and held_out > 0:
        return None
    return (f"not enough: at least {MIN_TRAINING_PHOTOS} training and 1 held-out correction are needed "
            f"(there are {corrections} and {held_out}); collect more on the admin page")


@dataclass(frozen=True)
class Plan:
    """The retrain about to run, as `make retrain` prints it before training."""

    model: str
    version: str
    datasets: str
    corrections: int
    held_out: int
    demo_scenes: int
    start: str
    epochs: int
    deploy_canary: float | None  # None: --no-deploy

    @property
    def enough(self) -> bool:
        return shortfall(self.corrections, self.held_out) is None

    def lines(self) -> list[str]:
        archived = (f"choose its threshold leaving one source out (the real photo sources and each dataset: harm "
                    f"<= 1 % on every one) and archive it as {self.model} {self.version}")
        then = (f"{archived}, gate it (samples, real photos and these {self.held_out} held-out corrections, "
                f"against the default) and deploy it as a {self.deploy_canary:g}% canary"
                if self.deploy_canary is not None else f"{archived} (--no-deploy: not deployed)")
        return [
            f"plan: fine-tune {self.start} for {self.epochs} epochs on {self.corrections} corrections from "
            f"{self.datasets} + {self.demo_scenes} generated demo scenes, {self.held_out} corrections held out "
            "to score it; then " + then,
            "data: " + self.verdict(),
        ]

    def verdict(self) -> str:
        refused = shortfall(self.corrections, self.held_out)
        if refused is not None:
            return refused
        if self.corrections < HELPS_FROM:
            said = (f"too few to expect a measurable change ({self.corrections} < {HELPS_FROM}); it will run, but "
                    f"collect about {USUALLY_ENOUGH} corrections of a kind before relying on it")
        elif self.corrections < USUALLY_ENOUGH:
            said = (f"enough to help ({HELPS_FROM}+ corrections of a kind measurably improve that kind), but at "
                    f"this size the gate passed 1 version in 3 (bench/FEEDBACK_LOOP.md): about "
                    f"{USUALLY_ENOUGH} make a pass likely")
        else:
            said = f"enough: at {USUALLY_ENOUGH}+ corrections of a kind the gate usually passed the new version"
        if self.held_out < COARSE_HELD_OUT:
            said += (f"; the held-out score rests on {self.held_out} photo(s), each {100 / self.held_out:.0f} "
                     "points of it, so a refusal may be bad luck of the split rather than a worse model "
                     "(--cross-validate 5 scores every training correction once, for 5 more trainings)")
        return said


def gate_scores(scores: Mapping[str, Any]) -> str:
    """Each set the smoke gate scored, beside the default's score where it was compared: "samples 1.000, real
    photos 0.833 (default 0.812), held-out corrections 0.969"."""
    parts = []
    for key, label in GATE_SETS:
        if f"{key}_accuracy" in scores:
            default = scores.get(f"{key}_default_accuracy")
            parts.append(f"{label} {scores[f'{key}_accuracy']:.3f}" + ("" if default is None else
                                                                        f" (default {default:.3f})"))
    if "unseen_worst_harm" in scores:
        parts.append(f"worst harm on sources it never saw {scores['unseen_worst_harm']:.1%}")
    return ", ".join(parts)
