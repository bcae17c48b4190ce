"""Start or stop TorchServe and the token gateway (make serve, make stop).

A thin command line: the work is operations.serving's main() (`--help` says how to call it).
"""

import sys

from operations.serving import main

if __name__ == "__main__":
    sys.exit(main())
