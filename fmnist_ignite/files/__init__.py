"""The files a run directory and a study keep: durable writes, and one bounded, checked reader per kind."""
