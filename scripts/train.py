"""The demo-scenes recipe: a torchvision model trained on a folder of upright photos.

A thin command line: the work is food_rotation.training.train's main() (`--help` says how to call it).
"""

import sys

from food_rotation.training.train import main

if __name__ == "__main__":
    sys.exit(main())
