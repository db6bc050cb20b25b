"""The command line: ``fmnist-ignite`` and ``examples/run.py``."""
