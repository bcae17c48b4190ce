"""The shipped model's last step: a new head on a frozen backbone, its threshold chosen on sources it never saw.

    python -m food_rotation.training.fit_head weights/food_rotation_lite0_e2e.pth data/real \\
        --out weights/food_rotation_lite0.pth                                   (part of `make weights`)

The backbone (fine-tuned end to end by train_pretrained.py) stays as it is. On its frozen features
(frozen_features.py) the head is fitted to every real photo with an up on the training side of real_scenes'
split, with augmented copies, and to the photos with no up as "unsure" (photo_sources.NO_UP_LIST). Before that,
leave one source out (leave_one_source_out.py) fits the same recipe once per source group without it: the
temperature is fitted on those out-of-group answers, and the threshold is the smallest that keeps harm <=
--max-harm on every left-out group. Both go into the .json beside the weights (scripts/archive.sh carries them;
handler/model-config.yaml's min_confidence is set to that threshold), with the per-group summary
("evaluation_by_source") that the admin page and `models list` show. About 10 minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from food_rotation.training.evaluate import load_model
from food_rotation.training.frozen_features import photo_features
from food_rotation.training.leave_one_source_out import HeadRecipe, figures_at, out_of_group
from food_rotation.training.model_records import tied_to
from food_rotation.training.source_evaluation import RealPhotos, left_out_rule, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("backbone", type=Path, help="weights .pth whose backbone is kept (its .json beside it)")
    parser.add_argument("real", type=Path, help="data/real (make real-data)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-harm", type=float, default=0.01)
    parser.add_argument("--augmentations", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    net, image_size = load_model(args.backbone)
    net.turn_averaging = True  # the head is fitted for, and scored as, the four-view average
    real = RealPhotos.under(args.real)
    recipe = HeadRecipe()
    features = photo_features(net, real.photos, image_size, args.augmentations).features
    answers = out_of_group(features, real.groups, real.kinds, real.trainable, recipe)
    temperature, threshold = left_out_rule(answers, args.max_harm, True)
    rows = [figures_at(group, threshold, temperature, True) for group in answers]
    left_out = summary(rows, threshold, temperature)
    print(f"leave one source out ({len(answers)} groups): T {temperature:.3f}, threshold {threshold:.4f}; worst "
          f"harm {left_out.worst_harm:.1%} ({left_out.worst_group}), food fix {left_out.food_fix:.1%}, all fix "
          f"{left_out.all_fix:.1%}, no up left alone {left_out.no_up_left_alone}")

    train = [i for i, (kind, trainable) in enumerate(zip(real.kinds, real.trainable, strict=True))
             if trainable and kind == "upright"]
    no_up = [i for i, (kind, trainable) in enumerate(zip(real.kinds, real.trainable, strict=True))
             if trainable and kind == "no_up"]
    head = recipe.fit(features[train], features[no_up])
    with torch.no_grad():
        net.head[-1].weight.copy_(head.weight)
        net.head[-1].bias.copy_(head.bias)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), args.out)
    info = json.loads(args.backbone.with_suffix(".json").read_text())
    for stale in ("evaluation", "calibration", "epoch", "train_acc", "val_acc", "best_acc"):
        info.pop(stale, None)  # figures of the backbone's own head, not of this one
    sha256 = hashlib.sha256(args.out.read_bytes()).hexdigest()
    info.update({
        "turn_averaging": True, "sha256": sha256, "temperature": temperature, "min_confidence": threshold,
        "head": {"backbone": args.backbone.name, "backbone_sha256": hashlib.sha256(args.backbone.read_bytes())
                 .hexdigest(), "photos": len(train), "no_up_photos": len(no_up), "augmentations": args.augmentations,
                 "recipe": asdict(recipe)},
        "calibration": {"data": f"leave-one-source-out answers of {args.real}", "n": sum(4 * a.photos
                                                                                            for a in answers)},
        "evaluation_by_source": tied_to(args.out, {**left_out.as_dict(), "max_harm": args.max_harm}),
    })
    args.out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"{args.out}: head fitted on {len(train)} photos with an up and {len(no_up)} without; set "
          f"min_confidence: {threshold:.4f} in handler/model-config.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
