"""fmnist-ignite: train and evaluate the tutorial's Fashion-MNIST MLP with PyTorch-Ignite.

The public API is imported on first use, so the command line answers ``--help`` and rejects a bad flag
before torch is imported. How the code is organised: docs/architecture.md.

Importing it gives the ``fmnist_ignite`` logger its handler (``ui.console.install``): a run's lines, and those
of the handlers used on their own, are printed as ``print`` would; ``logging`` silences or captures them.
"""

from __future__ import annotations

import importlib

from fmnist_ignite.ui import console as _console

_console.install()

__version__ = "0.1.0"
_PUBLIC = {  # the module that defines them -> the public names
    "config.settings": ("Config",),
    "config.commands": ("LrFindSettings", "TuneSettings"),
    "config.recipes": ("recipe", "RECIPES"),
    "config.files": ("read_config_file",),
    "files.durable": ("write_durably",),
    "files.checkpoints": ("DurableDiskSaver", "load_checkpoint"),
    "files.calibration": ("read_temperature",),
    "data.idx": ("read_idx",),
    "data.fashion_mnist": ("CLASS_NAMES", "load_fashion_mnist", "locate_fashion_mnist"),
    "data.splits": ("make_splits",),
    "data.loaders": ("get_data_loaders", "ImageDataset", "make_loader", "TensorLoader"),
    "core.models": ("build_model", "CNN", "MODELS", "Net"),
    "core.device": ("resolve_device",),
    "core.optim": ("make_optimizer",),
    "core.engines": ("class_indices", "create_evaluator", "create_trainer"),
    "ui.console": ("lines_to",),
    "ui.display": ("choose_display", "in_jupyter_kernel"),
    "ui.plots": ("plot_confusion", "plot_curves"),
    "analysis.statistics": ("mcnemar", "mean_interval", "wilson_interval"),
    "analysis.per_class": ("per_class_accuracy",),
    "analysis.calibration": ("brier_score", "expected_calibration_error", "fit_temperature", "plot_reliability"),
    "analysis.predictions": ("load_predictions", "PredictionCollector"),
    "analysis.compare": ("compare_runs", "Comparison"),
    "analysis.inference": ("evaluate_checkpoint", "evaluate_corruptions", "load_images", "load_model", "predict"),
    "analysis.interpretation": ("interpret", "Interpretation", "most_confused"),
    "analysis.export": ("export_model", "ExportResult"),
    "analysis.report": ("report",),
    "handlers.loss_logging": ("attach_epoch_header", "attach_loss_logging"),
    "handlers.history": ("MetricsHistory",),
    "handlers.evaluation": ("attach_evaluation", "format_metrics"),
    "handlers.checkpointing": ("attach_best_model_checkpoint", "attach_checkpointing", "score_function"),
    "handlers.early_stopping": ("attach_early_stopping",),
    "handlers.schedule": ("attach_one_cycle_lr",),
    "handlers.progress": ("attach_progress_bar",),
    "handlers.epoch_stats": ("attach_epoch_stats",),
    "handlers.metrics_csv": ("attach_metrics_csv",),
    "handlers.standard": ("attach_default_handlers", "StandardHandlers"),
    "handlers.notebook": ("attach_notebook_view", "NotebookView"),
    "handlers.tensorboard": ("attach_tensorboard",),
    "run.checkpoints": ("RandomState",),
    "run.rundir": ("claim_run_directory", "find_latest_checkpoint", "RunDirectory"),
    "run.result": ("TrainResult",),
    "run.training": ("Training",),
    "run.launch": ("train",),
    "experiments.lr_finder": ("find_lr", "LRFinderResult"),
    "experiments.seeds": ("SeedsResult", "train_seeds"),
    "experiments.search_space": ("DEFAULT_SPACE", "read_search_space"),
    "experiments.tuning": ("attach_pruning", "tune", "TuneResult"),
    "experiments.listing": ("list_runs",),
    "errors": ("FmnistError", "NonFiniteLoss", "TrainingInterrupted"),
}
_WHERE = {name: module for module, names in _PUBLIC.items() for name in names}  # public name -> its module
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> object:
    """Import the module of a public name when the name is first used."""
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"fmnist_ignite.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
