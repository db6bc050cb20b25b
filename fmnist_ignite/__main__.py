"""``python -m fmnist_ignite {train,evaluate,predict}``, the same as the ``fmnist-ignite`` command."""

import sys

from fmnist_ignite.cli.main import main

sys.exit(main())
