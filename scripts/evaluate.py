"""A model on held-out photos: accuracy, confusion, harm and fix, calibration.

A thin command line: the work is food_rotation.training.evaluate's main() (`--help` says how to call it).
"""

import sys

from food_rotation.training.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
