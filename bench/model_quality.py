"""make bench-quality: candidate models side by side, quality and serving cost in one run -> bench/MODEL_QUALITY.md.

Quality, in-process (food_rotation.training.evaluate.collect_answers, food_rotation.training.calibration): every
photo of each held-out folder of data/rotation_set/heldout (food_rotation/training/real_scenes.py) and of samples/gate
at all four turns, with the candidate's temperature; accuracy (argmax), harm, fix, coverage and ECE at
--min-confidence and at the threshold that keeps harm <= 1 % on the held-out real photos, with the handler's
require_agreement (a turn trusted only when the four turned views agree) as --config sets it. flatlay/ has no "up":
there the share left unsure is what counts.
Serving, the real stack: each candidate's archive (scripts/archive.sh) in its own TorchServe, held-out real photos
at concurrency 1 and 4, then the workers' RSS and PSS. The first candidate is the shipped one.

    .venv/bin/python bench/model_quality.py --candidate lite0-160=weights/food_rotation_lite0.pth \
        --candidate demo=weights/food_rotation_demo.pth [--seconds 10] [--limit N] [--out bench/MODEL_QUALITY.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import ts
import yaml
from quality_serving import CONCURRENCY, Served, serve
from torch import Tensor

from food_rotation.abstention import calibrated
from food_rotation.rotation_model import CLASSES
from food_rotation.training.calibration import choose_threshold, point_at, summary
from food_rotation.training.evaluate import collect_answers, load_model
from food_rotation.training.model_records import (
    MODEL_CONFIG,
    configured_agreement,
    configured_min_confidence,
    rounded_up,
    sidecar_temperature,
)
from food_rotation.training.rotation_data import find_photos
from operations.torchserve_process import ROOT

HELDOUT = ROOT / "data" / "rotation_set" / "heldout"
SETS = {"real": HELDOUT / "real", "composite": HELDOUT / "composite", "text": HELDOUT / "text",
        "scenes": HELDOUT / "scenes", "flatlay": HELDOUT / "flatlay", "gate": ROOT / "samples" / "gate"}
NO_UP = "flatlay"
MAX_HARM = 0.01


@dataclass(frozen=True)
class Candidate:
    name: str
    weights: Path
    arch: str
    image_size: int
    temperature: float

    @classmethod
    def parse(cls, text: str) -> Candidate:
        """NAME=WEIGHTS.pth, its .json beside it (what scripts/archive.sh needs too)."""
        name, sep, path = text.partition("=")
        weights = Path(path)
        if not sep or not name or weights.suffix != ".pth":
            raise argparse.ArgumentTypeError(f"want NAME=WEIGHTS.pth, got {text!r}")
        if not weights.is_file() or not weights.with_suffix(".json").is_file():
            raise argparse.ArgumentTypeError(f"{weights} or its .json is missing (make weights makes the shipped one)")
        info = json.loads(weights.with_suffix(".json").read_text())
        return cls(name, weights, info["arch"], int(info["image_size"]), sidecar_temperature(weights)[0])


def shown(path: Path) -> str:
    """`path` relative to the repository where it lies inside it, as the reproducing command would name it."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def threshold_text(threshold: float) -> str:
    """choose_threshold answers just above 1 when even 1.0 harms too much: nothing is ever turned."""
    return "never" if threshold > 1 else f"{threshold:.4f}"


def subset(photos: list[Path], limit: int | None) -> list[Path]:
    """`limit` photos spread over the whole folder (every source), not its first sources only."""
    if limit is None or limit >= len(photos):
        return photos
    return [photos[i * len(photos) // limit] for i in range(limit)]


Scores = tuple[Tensor, Tensor, Tensor | None]  # calibrated probabilities, labels, views agree (None: not required)


def quality(candidate: Candidate, sets: dict[str, list[Path]], batch_size: int,
            require_agreement: bool) -> dict[str, Scores]:
    """Scores per set: one forward pass per set, every figure from it."""
    model, image_size = load_model(candidate.weights)
    results = {}
    for name, photos in sets.items():
        logits, labels, agree = collect_answers(model, photos, image_size, batch_size)
        results[name] = calibrated(logits, candidate.temperature), labels, agree if require_agreement else None
    return results


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
            *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidate", type=Candidate.parse, action="append", required=True, metavar="NAME=WEIGHTS",
                        help="a weights .pth with its .json (arch, image_size, temperature); the first is shipped")
    parser.add_argument("--config", type=Path, default=MODEL_CONFIG, help="model-config.yaml: archives, threshold")
    parser.add_argument("--min-confidence", type=float, help="default: --config's handler.min_confidence")
    parser.add_argument("--agreement", action=argparse.BooleanOptionalAction,
                        help="trust a turn only when the four turned views agree (default: --config's)")
    parser.add_argument("--seconds", type=float, default=10.0, help="of load per concurrency and candidate")
    parser.add_argument("--limit", type=int, help="at most this many photos per folder (a quick run)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads, quality part")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "MODEL_QUALITY.md")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Scored:
    """Every candidate's (probabilities, labels) per held-out set, its harm <= 1 % threshold, and the shipped bar."""

    candidates: list[Candidate]
    sets: dict[str, list[Path]]
    scores: dict[str, dict[str, Scores]]
    chosen: dict[str, float]
    min_confidence: float
    require_agreement: bool

    def thresholds(self, candidate: Candidate) -> list[tuple[str, float]]:
        """min_confidence for all; the harm <= 1 % threshold too where it differs."""
        pairs = [(f"{self.min_confidence:.4f} (min_confidence)", self.min_confidence)]
        if self.chosen[candidate.name] != self.min_confidence:
            pairs.append((f"{threshold_text(self.chosen[candidate.name])} (harm <= {MAX_HARM:.0%} on real)",
                          self.chosen[candidate.name]))
        return pairs

    def rows(self, make: Callable[[Tensor, Tensor, Tensor | None, float], list[str]], name: str) -> list[list[str]]:
        return [[candidate.name, label, *make(*self.scores[candidate.name][name], value)]
                for candidate in self.candidates for label, value in self.thresholds(candidate)]


def score(candidates: list[Candidate], sets: dict[str, list[Path]], min_confidence: float, require_agreement: bool,
          batch_size: int) -> Scored:
    scores, chosen = {}, {}
    for candidate in candidates:
        scores[candidate.name] = quality(candidate, sets, batch_size, require_agreement)
        probs, labels, agree = scores[candidate.name]["real"]
        chosen[candidate.name] = rounded_up(choose_threshold(probs, labels, MAX_HARM, agree))
        print(f"{candidate.name}: scored; harm <= {MAX_HARM:.0%} on real from {threshold_text(chosen[candidate.name])}",
              flush=True)
    return Scored(candidates, sets, scores, chosen, min_confidence, require_agreement)


def figures(probs: Tensor, labels: Tensor, agree: Tensor | None, threshold: float) -> list[str]:
    s = summary(probs, labels, threshold, agree=agree)
    return [f"{s['accuracy']:.2%}", f"{s['harm']:.2%}", f"{s['fix']:.2%}", f"{s['coverage']:.2%}", f"{s['ece']:.3f}"]


def unsure(probs: Tensor, labels: Tensor, agree: Tensor | None, threshold: float) -> list[str]:
    shares = [1 - point_at(probs[labels == k], labels[labels == k], threshold,
                           None if agree is None else agree[labels == k]).coverage for k in range(len(CLASSES))]
    return [f"{share:.1%}" for share in shares] + [f"{1 - point_at(probs, labels, threshold, agree).coverage:.1%}"]


def quality_report(scored: Scored, command: str, bar_source: str) -> list[str]:
    candidates = scored.candidates
    lines = ["# Candidate models side by side: quality and serving cost", "",
             f"Reproduce: `{command}` (`make bench-quality` runs the shipped candidates), with nothing else running. "
             "Recipes tried and not shipped, and how each candidate was trained: bench/MODEL_EXPERIMENTS.md.",
             "", f"The first candidate ({candidates[0].name}) is the shipped one. Quality is computed in-process: "
             "every photo at all four turns (label = the turn that makes it upright), probabilities "
             "softmax(logits / T) with the candidate's temperature from its .json. Held-out photos come from "
             "data/rotation_set/heldout/ (food_rotation/training/real_scenes.py: 30 % of each source's photos, "
             "near-duplicates "
             "together, none in training); gate is samples/gate/, the smoke gate's generated scenes. Harm: upright "
             "photos turned; fix: turned photos made upright; coverage: share of items the model is sure of "
             "(confidence >= threshold" + (" and the four turned views agree, as require_agreement has it"
                                            if scored.require_agreement else "") +
             "; the rest is left as it is); ECE over 10 bins. "
             f"Thresholds: min_confidence {scored.min_confidence:.4f} (from {bar_source}) "
             f"and, per candidate, the smallest that keeps harm <= {MAX_HARM:.0%} on the held-out real photos "
             "(food_rotation.training.calibration.choose_threshold, rounded up to 4 decimals as model-config.yaml "
             "takes it; "
             "chosen on those photos, so its harm there is <= 1 % by construction: the other sets tell how it "
             "carries over).", "", "## Candidates", ""]
    lines += table(["candidate", "weights", "architecture", "input size", "temperature",
                    f"threshold for harm <= {MAX_HARM:.0%} on real"],
                   [[c.name, f"`{shown(c.weights)}`", c.arch, f"{c.image_size} px", f"{c.temperature:.3f}",
                     threshold_text(scored.chosen[c.name])] for c in candidates])
    for name, photos in scored.sets.items():
        if name == NO_UP:
            continue
        lines += ["", f"## Quality: {name} ({len(photos)} photos x 4 turns)", ""]
        lines += table(["candidate", "threshold", "accuracy", "harm", "fix", "coverage", "ECE"],
                       scored.rows(figures, name))
    lines += ["", f"## No up: {NO_UP} ({len(scored.sets[NO_UP])} plates from above x 4 turns), share left unsure", "",
              "A plate seen from above has no right way up: a good model is mostly unsure (confidence < threshold) "
              "and leaves it as it is, whatever the turn.", ""]
    return lines + table(["candidate", "threshold", *(f"unsure at {d}" for d in CLASSES), "unsure, all"],
                         scored.rows(unsure, NO_UP))


def serving_report(candidates: list[Candidate], served: dict[str, Served], config_file: Path, photos: int,
                   seconds: float) -> list[str]:
    config = yaml.safe_load(config_file.read_text())
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    lines = ["", "## Serving: TorchServe direct", "",
             f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, torch {torch.__version__}, "
             f"TorchServe {ts.__version__}; settings from {shown(config_file)}: {config['minWorkers']} workers x "
             f"{config.get('handler', {}).get('torch_threads', 1)} torch thread(s), batch size "
             f"{config['batchSize']}, max batch delay {config['maxBatchDelay']} ms. The {photos} held-out real "
             f"photos (JPEG bytes, sent as they are) go to TorchServe directly, {seconds:g} s per concurrency, "
             "from Python clients with a keep-alive session each, on the same cores. The token proxy's overhead "
             "is measured in bench/RESULTS.md. Worker memory after the load: RSS and PSS of each worker (PSS splits "
             "shared pages between the processes that map them, so the sum is what the workers cost together).", ""]
    return lines + table(["candidate", "architecture", "input size",
                          *(f"{head} c={c}" for c in CONCURRENCY for head in ("images/s", "p50 ms")),
                          "failed", "worker RSS MiB, each", "worker PSS MiB, each (sum)"],
                         [[c.name, c.arch, f"{c.image_size} px",
                           *(cell for rate, p50, _ in served[c.name].measured.values()
                             for cell in (f"{rate:.1f}", f"{p50:.0f}")),
                           sum(failed for _, _, failed in served[c.name].measured.values()),
                           ", ".join(f"{v:.0f}" for v in served[c.name].rss),
                           ", ".join(f"{v:.0f}" for v in served[c.name].pss) + f" ({sum(served[c.name].pss):.0f})"]
                          for c in candidates])


BY_SOURCE = ("<!-- by source: make bench-sources -->", "<!-- end of by source -->")


def kept_section(report: Path) -> list[str]:
    """The per-source section (written by hand from `make bench-sources`' tables, which take half an hour more):
    kept, between its markers, when this bench writes the rest of the page anew."""
    text = report.read_text() if report.is_file() else ""
    start, end = text.find(BY_SOURCE[0]), text.find(BY_SOURCE[1])
    return ["", *text[start:end + len(BY_SOURCE[1])].splitlines()] if 0 <= start < end else []


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join([".venv/bin/python", "bench/model_quality.py", *(sys.argv[1:] if argv is None else argv)])
    torch.set_num_threads(args.threads)
    min_confidence = (args.min_confidence if args.min_confidence is not None
                      else configured_min_confidence(args.config)[0])
    workers = yaml.safe_load(args.config.read_text())["minWorkers"]
    try:
        sets = {name: subset(find_photos(folder), args.limit) for name, folder in SETS.items()}
    except FileNotFoundError as exc:
        raise SystemExit(f"{exc}: make the held-out sets first (make weights, "
                         "food_rotation/training/real_scenes.py)") from exc
    require_agreement = configured_agreement(args.config, args.agreement)
    scored = score(args.candidate, sets, min_confidence, require_agreement, args.batch_size)
    real = [path.read_bytes() for path in sets["real"]]
    served = {}
    for candidate in args.candidate:
        served[candidate.name] = serve(candidate.name, candidate.weights, args.config, real, args.seconds, workers)
        print(f"{candidate.name}: " + ", ".join(f"c={c} {rate:.1f}/s" for c, (rate, _, _)
                                                in served[candidate.name].measured.items()), flush=True)
    bar_source = "--min-confidence" if args.min_confidence is not None else shown(args.config)
    lines = [*quality_report(scored, command, bar_source),
             *serving_report(args.candidate, served, args.config, len(real), args.seconds)]
    lines[1:1] = kept_section(args.out)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
