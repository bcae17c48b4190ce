"""Collected corrections -> the next model version, deployed as a canary. Promotion stays a human decision.

    make retrain                               every dataset collected so far (= python -m scripts.retrain)
    make retrain DATASET=feedback-2            one dataset (or several: DATASET=feedback-1,feedback-2)

1. Train on the datasets' photos except their held-out fifth (chosen by sha256, so the same photos every time),
   mixed with --demo-scenes generated scenes (200; 0 for none), fine-tuning --init (the demo weights by default).
   Every dataset by default: trained on the active one alone, a version does not learn from the corrections
   collected before it was opened (0.685 against 1.000 on their held-out photos, bench/TWO_DATASETS.md).
2. The held-out corrections are the validation set; the last epoch is kept, so its accuracy there is an honest
   test figure (`heldout_acc`, next to `heldout_acc_before` of the starting weights).
3. Extract the weights (weights/retrained/, git-ignored), archive model_store/food_rotation-v<next>.mar with
   each dataset's name, manifest digest and counts in its metadata.json.
4. Deploy through the proxy: the smoke gate checks the gate samples and the held-out corrections of the same
   datasets; the version then takes --canary percent of traffic. Promote it on the admin page or with
   `.venv/bin/python -m auth_plugin models promote`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from auth_plugin.datasets import DatasetError, DatasetStore, union
from auth_plugin.models_cli import DEFAULT_URL, Refused, admin_call, admin_token
from auth_plugin.rollout import RolloutError, read_archive
from auth_plugin.settings import ROOT, ProxySettings
from scripts import extract_model_weight, make_demo_data, train
from scripts.rotation_data import find_photos

DEMO_WEIGHTS = ROOT / "weights" / "food_rotation_demo.pth"
MIN_TRAINING_PHOTOS = 8


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    settings = ProxySettings.from_env(os.environ)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="all",
                        help="the collected datasets: 'all' (the default), a name, or 'name,name'")
    parser.add_argument("--datasets-dir", type=Path, default=settings.datasets_dir)
    parser.add_argument("--demo-scenes", type=int, default=200,
                        help="mix in this many generated demo scenes (0: none). Without them a version fine-tuned "
                             "on one new kind of photo forgets the old ones, and the smoke gate refuses it "
                             "(bench/FEEDBACK_LOOP.md)")
    parser.add_argument("--init", type=Path, default=DEMO_WEIGHTS, help="weights to fine-tune (with their .json)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (lower than from scratch)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=settings.model_name)
    parser.add_argument("--model-store", type=Path, default=settings.model_store)
    parser.add_argument("--weights-dir", type=Path, default=ROOT / "weights" / "retrained",
                        help="where the extracted weights (.pth + .json) are kept: an --init for a later retrain")
    parser.add_argument("--version", help="the new version (default: one major above the model store's highest)")
    parser.add_argument("--canary", type=float, default=10.0, help="percent of traffic for the new version")
    parser.add_argument("--no-deploy", action="store_true", help="stop after the archive")
    parser.add_argument("--url", default=os.environ.get("PROXY_URL", DEFAULT_URL), help="the token proxy")
    parser.add_argument("--token", help="admin-scope token (default: PROXY_ADMIN_TOKEN or .run/proxy/admin_token)")
    return parser.parse_args(argv)


def next_version(model_store: Path, model: str) -> str:
    majors = []
    for path in model_store.glob("*.mar"):
        try:
            info = read_archive(model_store, path.name)
        except RolloutError:
            continue
        if info["model"] == model:
            majors.append(int(str(info["version"]).split(".")[0]))
    return f"{max(majors, default=0) + 1}.0"


def demo_scenes(count: int, seed: int) -> list[Path]:
    """Generated scenes, cached by count and seed: they keep the new version from forgetting the old photos."""
    if count <= 0:
        return []
    folder = ROOT / "data" / "demo_mix" / f"seed{seed}-n{count}"
    if len(list(folder.glob("*.jpg"))) != count:
        make_demo_data.main([str(folder), "--count", str(count), "--seed", str(1000 + seed)])
    return find_photos(folder)


def deploy(args: argparse.Namespace, archive: str, datasets: list[str]) -> dict[str, Any]:
    try:
        return admin_call(args.url, args.model, admin_token(args.token), "POST", "/deploy",
                          {"archive": archive, "canary": args.canary, "gate_dataset": ",".join(datasets)})
    except Refused as exc:
        raise SystemExit(f"deploy {exc}\nthe archive stays in {args.model_store} for a look; nothing else "
                         "changed") from exc


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    store = DatasetStore(args.datasets_dir, ProxySettings().max_image_pixels)
    try:
        datasets = store.select(args.dataset)
        splits = {name: store.split(name) for name in datasets}
    except DatasetError as exc:
        raise SystemExit(f"error: {exc.message}") from exc
    if not datasets:
        raise SystemExit(f"error: no datasets in {args.datasets_dir}: collect corrections first (POST /feedback)")
    split = union(list(splits.values()))
    named = ", ".join(datasets)
    if len(split.train) < MIN_TRAINING_PHOTOS or not split.held_out:
        raise SystemExit(f"error: {named} holds {len(split.train)} training and {len(split.held_out)} held-out "
                         f"photos; at least {MIN_TRAINING_PHOTOS} and 1 are needed")
    version = args.version or next_version(args.model_store, args.model)
    init_info = json.loads(args.init.with_suffix(".json").read_text())
    mixed = demo_scenes(args.demo_scenes, args.seed)
    print(f"retraining {args.model} {version} on {named}: {len(split.train)} corrections + {len(mixed)} demo "
          f"scenes, {len(split.held_out)} held out; fine-tuning {args.init.name}")

    weights = args.weights_dir / f"{args.model}-v{version}.pth"
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = Path(scratch) / "retrain.tar"
        options = train.parse_args([str(args.datasets_dir), "--out", str(checkpoint), "--epochs",
                                    str(args.epochs), "--lr", str(args.lr), "--seed", str(args.seed), "--init",
                                    str(args.init), "--keep", "last", "--arch", init_info["arch"],
                                    "--image-size", str(init_info["image_size"])])
        started = time.perf_counter()
        result = train.train(options, split.train + mixed, split.held_out)
        train_s = time.perf_counter() - started
        if extract_model_weight.main([str(checkpoint), str(weights)]) != 0:
            return 2
    sidecar = weights.with_suffix(".json")
    sidecar.write_text(json.dumps({
        **json.loads(sidecar.read_text()),
        "datasets": [{"name": name, "manifest_sha256": part.manifest_sha256, "train_photos": len(part.train),
                      "held_out_photos": len(part.held_out)} for name, part in splits.items()],
        "demo_scenes": len(mixed),
        "heldout_acc": result["val_acc"], "heldout_acc_before": result.get("init_val_acc"),
    }, indent=2) + "\n")
    archive = f"{args.model}-v{version}"
    subprocess.run([str(ROOT / "scripts" / "archive.sh"), "--weights", str(weights), "--version", version,
                    "--name", args.model, "--archive-name", archive, "--export-path", str(args.model_store)],
                   check=True)
    print(f"trained in {train_s:.0f} s: held-out corrections {result.get('init_val_acc', float('nan')):.4f} -> "
          f"{result['val_acc']:.4f} ({len(split.held_out)} photos x 4 turns)")
    if args.no_deploy:
        print(f"not deployed (--no-deploy): python -m auth_plugin models deploy {archive}.mar --canary {args.canary}")
        return 0
    deployed = deploy(args, f"{archive}.mar", datasets)
    print(f"deployed {args.model} {deployed['version']} as a {deployed['canary_percent']:g}% canary "
          f"(gate: samples {deployed['gate_accuracy']:.3f}, held-out corrections {deployed['heldout_accuracy']:.3f})."
          f"\nPromote it on the admin page (Models) or: .venv/bin/python -m auth_plugin models promote {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
