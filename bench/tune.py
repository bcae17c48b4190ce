"""The serving settings tried for the shipped model, side by side in one run -> a table for bench/TUNING.md.

    .venv/bin/python bench/tune.py [--seconds 15] [--sizes "1 MP,12 MP"] [--out bench/.cache/tuning.md]

Each variant is handler/model-config.yaml with a few settings changed (workers x torch threads, batch size, max
batch delay), measured by bench/run_bench.py's own code (the in-process limit, TorchServe direct and through the
proxy; the stock and no-op peers are left out) at 1 MP (--sizes to add 12 MP), concurrency 1, 4 and 16. The
shipped file is not touched: copy the winner into it by hand, then run `make bench`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_report import Plan, Run, worst_ratio
from run_bench import WEIGHTS, measure

from operations.torchserve_process import ROOT

SHIPPED = ROOT / "handler" / "model-config.yaml"
VARIANTS: dict[str, dict[str, int]] = {  # name -> what differs from the shipped file
    "2 x 1 thread, batch 4, 2 ms": {"workers": 2, "threads": 1, "batchSize": 4, "maxBatchDelay": 2},
    "2 x 1 thread, batch 2, 2 ms": {"workers": 2, "threads": 1, "batchSize": 2, "maxBatchDelay": 2},
    "2 x 1 thread, no batching": {"workers": 2, "threads": 1, "batchSize": 1, "maxBatchDelay": 0},
    "1 x 2 threads, no batching": {"workers": 1, "threads": 2, "batchSize": 1, "maxBatchDelay": 0},
    "2 x 2 threads, no batching": {"workers": 2, "threads": 2, "batchSize": 1, "maxBatchDelay": 0},
}


def variant_config(changes: dict[str, int], folder: Path) -> Path:
    config = yaml.safe_load(SHIPPED.read_text())
    config.update(minWorkers=changes["workers"], maxWorkers=changes["workers"], batchSize=changes["batchSize"],
                  maxBatchDelay=changes["maxBatchDelay"])
    config["handler"]["torch_threads"] = changes["threads"]
    path = folder / f"config-{len(list(folder.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def table(runs: dict[str, Run]) -> list[str]:
    first = next(iter(runs.values()))
    cells = first.cells
    lines = ["| settings | " + " | ".join(f"{label} c={c}" for label, c in cells)
             + " | worst proxy / limit | p50 1 MP c=1 | worker RSS |",
             "| --- | " + " | ".join("---" for _ in cells) + " | --- | --- | --- |"]
    for name, run in runs.items():
        worst = worst_ratio(run, "proxy", "limit")
        small = ("1 MP", 1)
        lines.append(f"| {name} | " + " | ".join(f"{run.results[('proxy', *cell)].rate:.1f}" for cell in cells)
                     + f" | {run.ratio('proxy', 'limit', worst):.2f} ({worst[0]} c={worst[1]}) | "
                     + (f"{run.results[('proxy', *small)].p50:.0f} ms" if small in run.server else "-")
                     + f" | {sum(run.rss_after):.0f} MB |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="per cell: a photo takes ~0.2 s of a core")
    parser.add_argument("--sizes", default="1 MP", help="comma-separated: 1 MP, 12 MP")
    parser.add_argument("--weights", type=Path, default=WEIGHTS)
    parser.add_argument("--only", action="append", help="measure just this variant (repeatable)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / ".cache" / "tuning.md")
    args = parser.parse_args(argv)
    plan = Plan(sizes=tuple(size.strip() for size in args.sizes.split(",")), seconds=args.seconds,
                soak_requests=100, preprocess_rounds=1, peers=False)
    runs: dict[str, Run] = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, changes in VARIANTS.items():
            if args.only and name not in args.only:
                continue
            print(f"== {name}", flush=True)
            runs[name] = measure(plan, variant_config(changes, Path(folder)), args.weights)
    lines = [f"Through the proxy, images/s (`bench/tune.py --seconds {args.seconds:g} --sizes '{args.sizes}'`, "
             f"{args.weights.name}):", "",
             *table(runs)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
