"""Collected corrections -> the next model version, deployed as a canary. Promotion stays a human decision.

    make retrain                               every dataset collected so far (= python scripts/retrain.py)
    make retrain DATASET=feedback-2            one dataset (or several: DATASET=feedback-1,feedback-2)
    make retrain RETRAIN_ARGS="--init demo"    start from the demo weights rather than what is served

1. Start from what is served (--init served, the default): the proxy's admin API names the default version, and
   its archive in the model store gives back its weights and metadata.json. The new version improves the model
   users get (its architecture, weights and temperature) instead of replacing it. --init demo: the demo weights;
   --init NAME.mar: an archive of the model store (or a path to one); --init PATH.pth: weights with their .json.
   Offline (--no-deploy, and the proxy does not answer or there is no admin token): the newest archive of the
   model in the model store, with a note naming it. That is what the last retrain wrote, normally the version
   that is or will be promoted, but it may be a canary never promoted or one the gate refused: hence the note.
   A run that deploys needs the proxy anyway, so there an unanswered question stops it before training.
2. Train on the datasets' photos except their held-out fifth (chosen by sha256, so the same photos every time),
   mixed with --demo-scenes generated scenes (200; 0 for none). An efficientnet_lite0 keeps its frozen blocks as
   served and trains its top on cached views (train_pretrained.py; 4 views of each correction, 1 of each
   demo scene); the torchvision archs are fine-tuned whole (train.py).
   Every dataset by default: trained on the active one alone, a version does not learn from the corrections
   collected before it was opened (0.685 against 1.000 on their held-out photos, bench/TWO_DATASETS.md).
3. The held-out corrections are the validation set; the last epoch is kept, so its accuracy there is an honest
   test figure (`heldout_acc`, next to `heldout_acc_before` of the starting weights).
4. Its rule, as `make weights` chose the shipped one (training/source_rule.py): every source group of --sources
   (data/real: the shipped sources) and every dataset, as one more group, is left out in turn; a head is fitted
   on the new backbone's frozen features of the others, the temperature on those out-of-group answers, and the
   threshold is the smallest that keeps harm <= --max-harm on every group left out. The shipped head is the same
   recipe on every training photo (the dataset's top blocks are still fine-tuned on its corrections, so its own
   group is scored by a head, not a backbone, that never saw it). The archive serves that threshold and records
   the per-group figures; with no threshold that harmless, nothing is archived. A torchvision arch (the demo
   weights) cannot refit its head: it is scored as it is per group, under the same rule.
5. Extract the weights (weights/retrained/, git-ignored), archive model_store/food_rotation-v<next>.mar with that
   record and its provenance (food_rotation/provenance.py) in its metadata.json: each dataset's name, manifest
   digest, training count and the sha256 of every photo held out of it, and where it started (`init_version`,
   `init_sha256`).
6. Deploy through the proxy: the gate refuses a version whose record has harm above 1 % on a source it never saw
   (PROXY_GATE_MAX_UNSEEN_HARM); the smoke gate checks the gate samples and the corrections the archive names as held
   out; the version then takes --canary percent of traffic. Promote it on the admin page or with
   `.venv/bin/python -m auth_plugin models promote`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from auth_plugin.control.models_cli import Refused, admin_call, admin_token, default_url
from auth_plugin.feedback.datasets import DatasetError, DatasetStore
from auth_plugin.feedback.splits import union
from auth_plugin.settings import ROOT, ProxySettings
from food_rotation.provenance import DatasetUse, Provenance
from food_rotation.training import evaluate, extract_model_weight, make_demo_data
from food_rotation.training.archive import build_archive, worker_count
from food_rotation.training.cross_validation import cross_validate
from food_rotation.training.fine_tune_version import Schedule, trainer_for
from food_rotation.training.model_records import tied_to
from food_rotation.training.rotation_data import find_photos
from food_rotation.training.source_evaluation import RealPhotos
from food_rotation.training.source_rule import (
    NoHarmlessThreshold,
    SourceRule,
    install_head,
    source_rule,
    with_corrections,
)
from operations.processes import ServingError
from operations.retrain_plan import Plan, gate_scores, shortfall
from operations.retrain_start import starting_weights
from operations.served_weights import archives_of
from operations.torchserve_process import profile_proxy_env


def gateway_settings() -> ProxySettings:
    """The gateway's settings as `make serve` starts it (the environment over the PROFILE's): the retrain's defaults,
    the workers a version is deployed with among them."""
    try:
        return ProxySettings.from_env({**os.environ, **profile_proxy_env(os.environ)})
    except ServingError as exc:
        raise SystemExit(f"error: {exc}") from exc


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    settings = gateway_settings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="all",
                        help="the collected datasets: 'all' (the default), a name, or 'name,name'")
    parser.add_argument("--datasets-dir", type=Path, default=settings.datasets_dir)
    parser.add_argument("--demo-scenes", type=int, default=200,
                        help="mix in this many generated demo scenes (0: none). Without them a version fine-tuned "
                             "on one new kind of photo forgets the old ones, and the smoke gate refuses it "
                             "(bench/FEEDBACK_LOOP.md)")
    parser.add_argument("--init", default="served",
                        help="what to fine-tune: 'served' (the default version, asked of the proxy), 'demo' (the "
                             "demo weights), NAME.mar (an archive of the model store) or PATH.pth (with its .json)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (lower than from scratch)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=settings.model_name)
    parser.add_argument("--model-store", type=Path, default=settings.model_store)
    parser.add_argument("--weights-dir", type=Path, default=ROOT / "weights" / "retrained",
                        help="where the extracted weights (.pth + .json) are kept: an --init for a later retrain")
    parser.add_argument("--version", help="the new version (default: one major above the model store's highest)")
    parser.add_argument("--canary", type=float, default=10.0, help="percent of traffic for the new version")
    parser.add_argument("--workers", type=worker_count, default=settings.deploy_workers,
                        help="the new archive's minWorkers and maxWorkers (default: the gateway's "
                             "PROXY_DEPLOY_WORKERS, or the PROFILE's: 1 on the small node). TorchServe starts "
                             "what the archive says, whatever the deploy asks")
    parser.add_argument("--no-deploy", action="store_true", help="stop after the archive")
    parser.add_argument("--cross-validate", type=int, default=0, metavar="K",
                        help="first score K folds of the training corrections, each by a model trained on the "
                             "others (K more trainings): a steadier figure than a held-out fifth of a few photos")
    parser.add_argument("--sources", type=Path, default=ROOT / "data" / "real",
                        help="the real photo sources the threshold is chosen on, with the datasets (make real-data)")
    parser.add_argument("--max-harm", type=float, default=0.01,
                        help="upright photos the version may turn on any source group left out")
    parser.add_argument("--source-augmentations", type=int, default=3,
                        help="augmented copies of each photo the leave-one-source-out heads are fitted on")
    parser.add_argument("--plan", action="store_true",
                        help="say what the retrain would do and whether the data suffices, then stop")
    parser.add_argument("--url", default=default_url(), help="the token proxy")
    parser.add_argument("--token", help="admin-scope token (default: PROXY_ADMIN_TOKEN or .run/proxy/admin_token)")
    parser.set_defaults(max_image_pixels=settings.max_image_pixels)  # the proxy's own cap, as it stored them
    return parser.parse_args(argv)


def next_version(model_store: Path, model: str) -> str:
    majors = [int(version.split(".")[0]) for version in archives_of(model_store, model)
              if version.split(".")[0].isdigit()]
    return f"{max(majors, default=0) + 1}.0"


def demo_scenes(count: int, seed: int) -> list[Path]:
    """Generated scenes, cached by count and seed: they keep the new version from forgetting the old photos."""
    if count <= 0:
        return []
    folder = ROOT / "data" / "demo_mix" / f"seed{seed}-n{count}"
    if len(list(folder.glob("*.jpg"))) != count:
        make_demo_data.write_scenes(folder, count, 1000 + seed)
    return find_photos(folder)


REFUSED_DIR = ROOT / ".run" / "refused"


def deploy(args: argparse.Namespace, archive: str) -> dict[str, Any]:
    """The gate checks the archive's own held-out corrections (its metadata.json names them). A refused archive
    leaves the model store for REFUSED_DIR, so its version number is not spent: the next retrain takes it again."""
    try:
        return admin_call(args.url, args.model, admin_token(args.token), "POST", "/deploy",
                          {"archive": archive, "canary": args.canary})
    except Refused as exc:
        if exc.status != 422:
            raise SystemExit(f"deploy {exc}\nthe archive stays in {args.model_store}; nothing else changed") from exc
        REFUSED_DIR.mkdir(parents=True, exist_ok=True)
        kept = (args.model_store / archive).replace(REFUSED_DIR / archive)
        raise SystemExit(f"deploy {exc}\nthe archive moved to {kept} for a look, so its version is not spent; "
                         "nothing else changed") from exc


def selected_datasets(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    """The chosen datasets' splits by name, and their union; SystemExit saying why when there is too little."""
    store = DatasetStore(args.datasets_dir, args.max_image_pixels)
    try:
        splits = {name: store.split(name) for name in store.select(args.dataset)}
    except DatasetError as exc:
        raise SystemExit(f"error: {exc.message}") from exc
    if not splits:
        raise SystemExit(f"error: no datasets in {args.datasets_dir}: collect corrections first (POST /feedback)")
    split = union(list(splits.values()))
    refused = shortfall(len(split.train), len(split.held_out))
    if refused is not None:
        raise SystemExit(f"error: {', '.join(splits)}: {refused}")
    return splits, split


@dataclass(frozen=True)
class Start:
    """The version a retrain fine-tunes: its name and the sha256 of its weights."""

    init_version: str | None
    init_sha256: str


def train_version(args: argparse.Namespace, version: str, split: Any, named: str,
                  weights: Path) -> tuple[dict[str, Any], Start, int]:
    """Fine-tune the starting weights into `weights` (+ .json); (training result, the starting point's facts,
    demo scenes mixed in)."""
    with tempfile.TemporaryDirectory() as scratch:
        init = starting_weights(args, Path(scratch))
        init_info = json.loads(init.with_suffix(".json").read_text())
        start = Start(init_info.get("version"), hashlib.sha256(init.read_bytes()).hexdigest())
        began = (f"{start.init_version} ({init_info.get('archive', init.name)}, {init_info['arch']})"
                 if start.init_version else f"{init} ({init_info['arch']})")
        plan = Plan(args.model, version, named, len(split.train), len(split.held_out), max(args.demo_scenes, 0),
                    began, args.epochs, None if args.no_deploy else args.canary)
        print("\n".join(plan.lines()), flush=True)
        if args.plan:
            raise SystemExit(0)
        mixed = demo_scenes(args.demo_scenes, args.seed)
        checkpoint = Path(scratch) / "retrain.tar"
        trainer = partial(trainer_for(init_info["arch"]), Schedule(args.epochs, args.lr, args.seed))
        validation = None
        if args.cross_validate:
            validation = cross_validate(args.cross_validate, split.train, lambda train, scored, out: trainer(
                init, init_info, train, mixed, scored, out))
            print(validation.summary(), flush=True)
        started = time.perf_counter()
        result = trainer(init, init_info, split.train, mixed, split.held_out, checkpoint)
        result["train_s"] = time.perf_counter() - started
        if validation is not None:
            result["cross_validation"] = validation.as_json()
        try:
            extract_model_weight.extract_file(checkpoint, weights)
        except extract_model_weight.CheckpointError as exc:
            raise SystemExit(f"error: {exc}") from exc
    return result, start, len(mixed)


def chosen_rule(args: argparse.Namespace, weights: Path, splits: dict[str, Any]) -> SourceRule:
    """The new version's rule on --sources plus each dataset (its head refitted into `weights` where it can
    be); SystemExit when the sources are missing or no threshold keeps it harmless."""
    try:
        real = RealPhotos.under(args.sources)
    except FileNotFoundError as exc:
        raise SystemExit(f"error: {exc}: the threshold is chosen leaving one source out over them") from exc
    photos = with_corrections(real, {name: (part.train, part.held_out) for name, part in splits.items()})
    net, image_size = evaluate.load_model(weights)
    started = time.perf_counter()
    try:
        rule = source_rule(net, image_size, photos, args.max_harm, args.source_augmentations)
    except NoHarmlessThreshold as exc:
        raise SystemExit(f"error: not archived: {exc}") from exc
    if rule.head is not None:
        install_head(net, rule.head)
        torch.save(net.state_dict(), weights)
    left_out = rule.summary
    print(f"rule ({rule.record(args.max_harm)['how']}, {left_out.groups} source groups, "
          f"{time.perf_counter() - started:.0f} s): T {rule.temperature:.3f}, min_confidence {rule.threshold:.4f}; "
          f"worst harm {left_out.worst_harm:.1%} ({left_out.worst_group}), fix {left_out.all_fix:.1%}", flush=True)
    return rule


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    splits, split = selected_datasets(args)
    version = args.version or next_version(args.model_store, args.model)
    weights = args.weights_dir / f"{args.model}-v{version}.pth"
    result, start, mixed = train_version(args, version, split, ", ".join(splits), weights)
    rule = chosen_rule(args, weights, splits)
    provenance = Provenance(
        tuple(DatasetUse.of(name, part.manifest_sha256, part.train, part.held_out) for name, part in splits.items()),
        mixed, start.init_version, start.init_sha256, result["val_acc"], result.get("init_val_acc"))
    sidecar = weights.with_suffix(".json")
    info = {key: value for key, value in json.loads(sidecar.read_text()).items() if key != "evaluation"}
    sidecar.write_text(json.dumps({
        **info, "version": version, **provenance.as_metadata(), "temperature": rule.temperature,
        "min_confidence": rule.threshold,
        "calibration": {"data": f"out-of-group answers of {args.sources} and the datasets",
                        "n": 4 * rule.summary.all_photos},
        "evaluation_by_source": tied_to(weights, rule.record(args.max_harm)),
        **({"cross_validation": result["cross_validation"]} if "cross_validation" in result else {}),
    }, indent=2) + "\n")
    archive = f"{args.model}-v{version}"
    built = build_archive(weights, version, args.model, archive, args.model_store, provenance=provenance,
                          workers=args.workers, min_confidence=rule.threshold)
    print(f"wrote {built} (min_confidence {rule.threshold:.4f})")
    print(f"trained in {result['train_s']:.0f} s: held-out corrections {result.get('init_val_acc', float('nan')):.4f}"
          f" -> {result['val_acc']:.4f} ({len(split.held_out)} photos x 4 turns)")
    if args.no_deploy:
        print(f"not deployed (--no-deploy): python -m auth_plugin models deploy {archive}.mar --canary {args.canary}")
        return 0
    deployed = deploy(args, f"{archive}.mar")
    print(f"deployed {args.model} {deployed['version']} as a {deployed['canary_percent']:g}% canary "
          f"(gate: {gate_scores(deployed)})."
          f"\nPromote it on the admin page (Models) or: .venv/bin/python -m auth_plugin models promote {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
