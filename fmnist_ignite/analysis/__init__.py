"""Looking at a trained model: statistics, kept predictions, comparisons, inference, interpretation."""
