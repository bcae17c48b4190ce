"""`food-rotation`, the command installed with the package (pyproject.toml): a client of a running gateway.

    food-rotation fix PHOTOS/ --out FIXED/     a folder of photos made upright (operations/fix_folder.py)
"""

from __future__ import annotations

import sys

from operations import fix_folder

COMMANDS = {"fix": fix_folder.main}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:])
    asked = bool(argv) and argv[0] in ("-h", "--help")
    print(__doc__ if not argv or asked else f"food-rotation: unknown command {argv[0]!r}; one of: "
          f"{', '.join(COMMANDS)}", file=sys.stdout if asked else sys.stderr)
    return 0 if asked else 2


if __name__ == "__main__":
    sys.exit(main())
