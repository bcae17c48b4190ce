"""The real upright photos of four Debian packages, into data/real (make real-data).

A thin command line: the work is food_rotation.training.real_data's main() (`--help` says how to call it).
"""

import sys

from food_rotation.training.real_data import main

if __name__ == "__main__":
    sys.exit(main())
