"""Corrections collected on the admin page -> the next version, deployed as a canary.

A thin command line: the work is operations.retrain's main() (`--help` says how to call it).
"""

import sys

from operations.retrain import main

if __name__ == "__main__":
    sys.exit(main())
