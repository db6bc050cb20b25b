"""One training run: ``Training`` and ``train``, its directory, summary, checkpoints, signals and launch."""
