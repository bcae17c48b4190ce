"""`food-rotation`, the command installed with the package (pyproject.toml): a client of a running gateway.

    food-rotation fix PHOTOS/ --out FIXED/     a folder of photos made upright (operations/fix_folder.py)
"""

from __future__ import annotations

import sys

from operations import fix_folder

COMMANDS = {"fix": fix_folder.main}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip().split("\n\n", 1)[1] if not argv or argv[0] in ("-h", "--help") else
              f"food-rotation: unknown command {argv[0]!r}; one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
