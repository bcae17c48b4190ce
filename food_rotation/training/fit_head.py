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
from food_rotation.training.leave_one_source_out import HeadRecipe
from food_rotation.training.model_records import tied_to
from food_rotation.training.source_evaluation import RealPhotos
from food_rotation.training.source_rule import fitted_on_sources, install_head


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
    rule = fitted_on_sources(net, image_size, real, args.max_harm, args.augmentations)
    left_out = rule.summary
    print(f"leave one source out ({left_out.groups} groups): T {rule.temperature:.3f}, threshold "
          f"{rule.threshold:.4f}; worst harm {left_out.worst_harm:.1%} ({left_out.worst_group}), food fix "
          f"{left_out.food_fix:.1%}, all fix {left_out.all_fix:.1%}, no up left alone {left_out.no_up_left_alone}")
    install_head(net, rule.head)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), args.out)
    info = json.loads(args.backbone.with_suffix(".json").read_text())
    for stale in ("evaluation", "calibration", "epoch", "train_acc", "val_acc", "best_acc"):
        info.pop(stale, None)  # figures of the backbone's own head, not of this one
    sha256 = hashlib.sha256(args.out.read_bytes()).hexdigest()
    info.update({
        "turn_averaging": True, "sha256": sha256, "temperature": rule.temperature, "min_confidence": rule.threshold,
        "head": {"backbone": args.backbone.name, "backbone_sha256": hashlib.sha256(args.backbone.read_bytes())
                 .hexdigest(), "photos": len(real.fitted("upright")),
                 "no_up_photos": len(real.fitted("no_up")),
                 "augmentations": args.augmentations, "recipe": asdict(HeadRecipe())},
        "calibration": {"data": f"leave-one-source-out answers of {args.real}", "n": 4 * left_out.all_photos},
        "evaluation_by_source": tied_to(args.out, rule.record(args.max_harm)),
    })
    args.out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"{args.out}: head fitted on {len(real.fitted('upright'))} photos with an up and "
          f"{len(real.fitted('no_up'))} without; set min_confidence: {rule.threshold:.4f} in handler/model-config.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
