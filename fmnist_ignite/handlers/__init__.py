"""Event handlers for the trainer and evaluator, one behaviour per module, each with its ``attach_*``."""
