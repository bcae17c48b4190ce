"""food-rotation fix: a folder of photos made upright through the public gateway, with a report of every photo.

    food-rotation fix PHOTOS/ --out FIXED/      copies in FIXED/ (same tree), turned where the service is sure
    food-rotation fix PHOTOS/ --in-place        turned where they are; originals kept in PHOTOS/.food-rotation-backup/
    food-rotation fix PHOTOS/ --dry-run         only the CSV report: what it would do

The gateway's URL and a predict token: --url and --token, else FOOD_ROTATION_URL and FOOD_ROTATION_TOKEN (what
`make serve` prints). Photos (JPEG, PNG, WebP, HEIC: whatever the service decodes) are sent --jobs at a time; a
progress bar shows photos/s and the counts fixed / unsure / upright / failed.

- A JPEG is turned without loss: its EXIF Orientation is rewritten (food_rotation/turned_photo.py), no pixel
  is decoded or re-encoded. Other formats are re-encoded in their own format (lossless WebP and PNG stay
  lossless), with their ICC profile and EXIF kept.
- An unsure answer leaves the photo as it is (counted as unsure); --min-confidence sets the bar per request
  (0: every guess is applied; the service's curve is in bench/MODEL_QUALITY.md).
- A photo the service refuses (a 4xx), one that cannot be read, or a lost connection is reported in its row and
  the run goes on; the exit status is 1 when any photo failed, 0 otherwise.
- The report (CSV: path, turn, confidence, trusted, action, detail, sha256 before and after) is written as it
  goes. Re-running resumes from it: a photo already done is skipped, so none is ever turned twice, and --in-place
  is safe to interrupt: the original is backed up before the photo is replaced by an atomic rename, and a photo
  whose backup differs from it was already replaced.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from auth_plugin.feedback.manifest import write_whole
from food_rotation.turned_photo import TurnFailed, turned
from operations.gateway_client import Gateway, PhotoFailed

SUFFIXES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
            ".heic": "image/heic", ".heif": "image/heif"}
BACKUP_DIR = ".food-rotation-backup"
REPORT_NAME = "food-rotation-report.csv"
COLUMNS = ("path", "turn", "confidence", "trusted", "action", "detail", "sha256_before", "sha256_after")


@dataclass(frozen=True)
class Row:
    path: str
    turn: int | None
    confidence: float | None
    trusted: bool | None
    action: str  # fixed | upright | unsure | failed | would fix (dry run)
    detail: str
    sha256_before: str
    sha256_after: str

    def as_csv(self) -> list[str]:
        return [self.path, "" if self.turn is None else str(self.turn),
                "" if self.confidence is None else f"{self.confidence:.4f}",
                "" if self.trusted is None else str(self.trusted).lower(), self.action, self.detail,
                self.sha256_before, self.sha256_after]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def find_photos(folder: Path, skip: tuple[Path, ...]) -> list[Path]:
    """Every photo below `folder` by its suffix, sorted, outside the folders in `skip` (the output, the backups)."""
    skipped = [s.resolve() for s in skip]
    return sorted(path for path in folder.rglob("*") if path.suffix.lower() in SUFFIXES and path.is_file()
                  and not any(path.resolve().is_relative_to(s) for s in skipped))


def write_atomically(path: Path, data: bytes) -> None:
    """Whole or not at all, on disk before the report's row says so (the feedback store's write_whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_whole(path, data)


@dataclass(frozen=True)
class Plan:
    """Where this run writes: copies below `out`, or in place with backups; `dry_run` writes the report only."""

    folder: Path
    out: Path | None
    in_place: bool
    dry_run: bool

    def backup(self, photo: Path) -> Path:
        return self.folder / BACKUP_DIR / photo.relative_to(self.folder)

    def target(self, photo: Path) -> Path:
        return photo if self.in_place or self.out is None else self.out / photo.relative_to(self.folder)


def fix_one(photo: Path, plan: Plan, gateway: Gateway) -> Row:
    relative = photo.relative_to(plan.folder).as_posix()
    data = photo.read_bytes()
    before = sha256(data)
    if plan.in_place and plan.backup(photo).is_file() and sha256(plan.backup(photo).read_bytes()) != before:
        return Row(relative, None, None, None, "fixed", "already replaced (found on resuming)", before, before)
    try:
        answer = gateway.ask(data, SUFFIXES[photo.suffix.lower()])
        if not answer.trusted or answer.turn == 0:
            action = "unsure" if not answer.trusted else "upright"
            if not plan.dry_run and not plan.in_place:
                write_atomically(plan.target(photo), data)  # the copy is complete: every photo is there
            return Row(relative, answer.turn, answer.confidence, answer.trusted, action, "left as it is", before,
                       before)
        if plan.dry_run:
            return Row(relative, answer.turn, answer.confidence, True, "would fix", "", before, before)
        fixed, how = turned(data, answer.turn)
        if plan.in_place and not plan.backup(photo).exists():
            write_atomically(plan.backup(photo), data)
        write_atomically(plan.target(photo), fixed)
        return Row(relative, answer.turn, answer.confidence, True, "fixed", how, before, sha256(fixed))
    except (PhotoFailed, TurnFailed) as exc:
        return Row(relative, None, None, None, "failed", str(exc), before, "")


def done_before(report: Path) -> dict[str, Row]:
    """The rows of an earlier run's report that need no second look (anything but a failure), by path."""
    if not report.is_file():
        return {}
    with report.open(newline="") as stream:
        rows = [Row(r["path"], None, None, None, r["action"], r["detail"], r["sha256_before"], r["sha256_after"])
                for r in csv.DictReader(stream)]
    return {row.path: row for row in rows if row.action not in ("failed", "would fix")}


def still_done(row: Row, photo: Path, plan: Plan) -> bool:
    """Whether what an earlier run did to this photo still stands (so it is not sent, nor turned, again)."""
    target = plan.target(photo)
    if not target.is_file():
        return False
    current = sha256(target.read_bytes())
    return current == row.sha256_after or (plan.in_place and current != row.sha256_before)


def run(photos: list[Path], plan: Plan, gateway: Gateway, report: Path, jobs: int) -> Counter[str]:
    earlier = {} if plan.dry_run else done_before(report)
    todo = [p for p in photos if not (p.relative_to(plan.folder).as_posix() in earlier
                                      and still_done(earlier[p.relative_to(plan.folder).as_posix()], p, plan))]
    counts: Counter[str] = Counter(skipped=len(photos) - len(todo))
    report.parent.mkdir(parents=True, exist_ok=True)
    fresh = plan.dry_run or not report.is_file()
    pool = ThreadPoolExecutor(max(1, jobs))
    try:
        with report.open("w" if fresh else "a", newline="") as stream, \
                tqdm(total=len(todo), unit="photo", desc="fixing", dynamic_ncols=True) as bar:
            writer = csv.writer(stream)
            if fresh:
                writer.writerow(COLUMNS)
            for row in pool.map(lambda photo: fix_one(photo, plan, gateway), todo):
                writer.writerow(row.as_csv())
                stream.flush()
                counts[row.action] += 1
                bar.set_postfix({k: counts[k] for k in ("fixed", "would fix", "unsure", "upright", "failed")
                                 if counts[k]}, refresh=False)
                bar.update()
    finally:  # on Ctrl-C: the photos in flight finish their atomic writes, the queued ones are dropped
        pool.shutdown(wait=True, cancel_futures=True)
    return counts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="food-rotation fix", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="write the photos (turned or not) here, in the same tree")
    where.add_argument("--in-place", action="store_true", help="replace them, originals kept in a backup folder")
    where.add_argument("--dry-run", action="store_true", help="write only the report")
    parser.add_argument("--report", type=Path, help=f"the CSV report (default: OUT/{REPORT_NAME}, "
                        f"FOLDER/{BACKUP_DIR}/{REPORT_NAME} in place, ./{REPORT_NAME} for a dry run)")
    parser.add_argument("--url", default=os.environ.get("FOOD_ROTATION_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--token", default=os.environ.get("FOOD_ROTATION_TOKEN"))
    parser.add_argument("--jobs", type=int, default=2, help="photos in flight at once (the gateway's workers)")
    parser.add_argument("--min-confidence", type=float, help="the bar per request (default: the model's own)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.token:
        print("error: no token: pass --token or set FOOD_ROTATION_TOKEN (make serve prints one)", file=sys.stderr)
        return 2
    if not args.folder.is_dir():
        print(f"error: {args.folder} is not a folder", file=sys.stderr)
        return 2
    if args.min_confidence is not None and not 0 <= args.min_confidence <= 1:
        print("error: --min-confidence must be from 0 to 1", file=sys.stderr)
        return 2
    folder = args.folder.resolve()
    plan = Plan(folder, args.out.resolve() if args.out else None, args.in_place, args.dry_run)
    report = args.report or (plan.out / REPORT_NAME if plan.out else folder / BACKUP_DIR / REPORT_NAME
                             if plan.in_place else Path(REPORT_NAME))
    photos = find_photos(folder, tuple(p for p in (plan.out, folder / BACKUP_DIR) if p is not None))
    try:
        counts = run(photos, plan, Gateway(args.url, args.token, args.min_confidence), report, args.jobs)
    except KeyboardInterrupt:
        print(f"interrupted: what was done is in {report}; the same command resumes", file=sys.stderr)
        return 130
    said = ", ".join(f"{counts[k]} {k}" for k in ("fixed", "would fix", "upright", "unsure", "failed", "skipped")
                     if counts[k])
    print(f"{len(photos)} photo{'' if len(photos) == 1 else 's'}: {said or 'nothing to do'}; report: {report}")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
