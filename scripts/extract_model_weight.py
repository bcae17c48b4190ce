"""Training checkpoint (.tar) -> weights-only .pth plus its .json (what scripts/archive.sh reads).

A thin command line: the work is food_rotation.training.extract_model_weight's main() (`--help` says how to call it).
"""

import sys

from food_rotation.training.extract_model_weight import main

if __name__ == "__main__":
    sys.exit(main())
