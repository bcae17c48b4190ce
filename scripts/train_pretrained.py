"""The shipped recipe: ImageNet-pretrained EfficientNet-Lite0 trained on data/rotation_set.

A thin command line: the work is food_rotation.training.train_pretrained's main() (`--help` says how to call it).
"""

import sys

from food_rotation.training.train_pretrained import main

if __name__ == "__main__":
    sys.exit(main())
