"""How things are shown: where a run shows itself (notebook, terminal, file), figures, plots, HTML."""
