"""Settings: the ``Config`` dataclass and each setting's rules, the recipes, settings files. Imports no torch."""
