"""Where each real photo comes from, and which photos have no "up": what leave-one-source-out evaluation groups by.

A photo from a camera, a kitchen or a photographer the model never saw is the case that matters; a random split
puts photos of one photographer on both sides and flatters the model. So every real photo of data/real/photos
belongs to one source group (a package, a photographer's set, a food group of the composition table), and
evaluation leaves one group out at a time (food_rotation/training/leave_one_source_out.py).

Some photos have no "up" at all: grain filling the frame, a heap from straight above. They are listed by hand in
no_up_photos.csv with the reason ("no_up"; "unclear" where a person would hesitate): neither trained on as
upright nor scored for fix and harm; the "no_up" ones are the set on which the service must stay unsure.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

NO_UP_LIST = Path(__file__).with_name("no_up_photos.csv")
# What the end-to-end stage of `make weights` learns from (the sources of the first shipped weights, by their
# folder below data/real/photos); the head (fit_head.py) learns from every source. Kept apart so that leaving a
# newer source out is leaving it out of everything the model learnt.
END_TO_END_SOURCES = ("gcompris", "mate", "plasma")

# Food groups of the composition table (IFCT 2017), by letter; those with too few photos with an up to score alone
# (cereals, nuts, sugars, mushrooms, milk, eggs, seafood: 19 together) are one group, "other".
_IFCT_POOLS = {"N": "NO", "O": "NO", **dict.fromkeys("AHIJKLMQRS", "other")}
_GCOMPRIS_POOLS = {"explore_monuments": "monuments", "categorization-monuments": "monuments",
                   "explore_farm_animals": "animals", "explore_world_animals": "animals", "erase": "erase",
                   "explore_world_music": "music"}  # the rest by their category: categorization-fishes -> fishes
_PACKAGE_POOLS = {"palapeli": "puzzles", "puzzle-jigsaw": "puzzles"}


def source_group(relative: str) -> str:
    """The group of a photo named by its path below data/real/photos ('ifct/D/D012.jpg' -> 'food-D')."""
    parts = relative.split("/")
    if parts[0] == "ifct":
        return f"food-{_IFCT_POOLS.get(parts[1], parts[1])}"
    if parts[0] == "gcompris":
        activity = parts[1]
        pooled = next((pool for prefix, pool in _GCOMPRIS_POOLS.items() if activity.startswith(prefix)), None)
        return f"gcompris-{pooled or activity.rsplit('-', 1)[-1]}"
    return _PACKAGE_POOLS.get(parts[0], parts[0])


def end_to_end_source(relative: str) -> bool:
    return relative.split("/", 1)[0] in END_TO_END_SOURCES


def end_to_end_group(group: str) -> bool:
    """Whether a source group's photos (their training side) trained the end-to-end stage."""
    return group.split("-", 1)[0] in END_TO_END_SOURCES


def is_food(group: str) -> bool:
    return group.startswith("food-")


@dataclass(frozen=True)
class Labelled:
    """The real photos by what they teach: `upright` ones (with an up), `no_up` ones, and `unclear` (neither)."""

    upright: list[Path]
    no_up: list[Path]
    unclear: list[Path]


def no_up_labels(listing: Path = NO_UP_LIST) -> dict[str, tuple[str, str]]:
    """photo (relative to data/real/photos) -> (label, reason), from the hand-made list."""
    with listing.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    labels = {row["photo"]: (row["label"], row["reason"]) for row in rows}
    wrong = sorted({label for label, _ in labels.values()} - {"no_up", "unclear"})
    if wrong:
        raise ValueError(f"{listing}: labels must be no_up or unclear, not {', '.join(wrong)}")
    return labels


def labelled(photos: list[Path], root: Path, listing: Path = NO_UP_LIST) -> Labelled:
    labels = no_up_labels(listing)
    kinds: dict[str, list[Path]] = {"upright": [], "no_up": [], "unclear": []}
    for photo in photos:
        kinds[labels.get(photo.relative_to(root).as_posix(), ("upright", ""))[0]].append(photo)
    return Labelled(**kinds)
