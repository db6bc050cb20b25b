"""Many runs: the learning-rate finder, seeds, hyperparameter tuning and its confirmation."""
