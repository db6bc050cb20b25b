"""The tutorial's Fashion-MNIST run, done right: ``python examples/run.py --help``
lists the flags."""

import sys

from fmnist_ignite.cli.main import train_main

if __name__ == "__main__":
    sys.exit(train_main())
