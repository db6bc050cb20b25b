"""fmnist-ignite: train and evaluate the tutorial's Fashion-MNIST MLP with PyTorch-Ignite.

The public API is imported on first use, so the command line answers ``--help`` and rejects a bad flag
before torch is imported.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_WHERE = {  # public name -> the module that defines it
    "RandomState": "checkpoints",
    "load_checkpoint": "checkpoints",
    "RECIPES": "config",
    "Config": "config",
    "recipe": "config",
    "read_config_file": "configfile",
    "CLASS_NAMES": "data",
    "ImageDataset": "data",
    "TensorLoader": "data",
    "get_data_loaders": "data",
    "load_fashion_mnist": "data",
    "locate_fashion_mnist": "data",
    "make_loader": "data",
    "make_splits": "data",
    "read_idx": "data",
    "DurableDiskSaver": "durable",
    "write_durably": "durable",
    "class_indices": "engines",
    "create_evaluator": "engines",
    "create_trainer": "engines",
    "make_optimizer": "engines",
    "resolve_device": "engines",
    "FmnistError": "errors",
    "TrainingInterrupted": "errors",
    "MetricsHistory": "handlers",
    "attach_best_model_checkpoint": "handlers",
    "attach_checkpointing": "handlers",
    "attach_early_stopping": "handlers",
    "attach_epoch_header": "handlers",
    "attach_evaluation": "handlers",
    "attach_loss_logging": "handlers",
    "attach_one_cycle_lr": "handlers",
    "attach_progress_bar": "handlers",
    "format_metrics": "handlers",
    "score_function": "handlers",
    "evaluate_checkpoint": "inference",
    "load_images": "inference",
    "load_model": "inference",
    "predict": "inference",
    "LRFinderResult": "lr_finder",
    "find_lr": "lr_finder",
    "CNN": "models",
    "MODELS": "models",
    "Net": "models",
    "build_model": "models",
    "attach_epoch_stats": "handlers",
    "attach_metrics_csv": "handlers",
    "attach_tensorboard": "reports",
    "per_class_accuracy": "reports",
    "plot_confusion": "reports",
    "plot_curves": "reports",
    "RunDirectory": "rundir",
    "claim_run_directory": "rundir",
    "find_latest_checkpoint": "rundir",
    "Training": "training",
    "TrainResult": "training",
    "attach_default_handlers": "handlers",
    "train": "training",
    "NonFiniteLoss": "errors",
    "DEFAULT_SPACE": "tuning",
    "TuneResult": "tuning",
    "attach_pruning": "tuning",
    "read_search_space": "tuning",
    "tune": "tuning",
}


def __getattr__(name: str):
    """Import the module of a public name when the name is first used."""
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"fmnist_ignite.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = [
    "CLASS_NAMES",
    "CNN",
    "DEFAULT_SPACE",
    "MODELS",
    "RECIPES",
    "Config",
    "DurableDiskSaver",
    "FmnistError",
    "ImageDataset",
    "LRFinderResult",
    "MetricsHistory",
    "Net",
    "NonFiniteLoss",
    "RandomState",
    "RunDirectory",
    "TensorLoader",
    "TrainResult",
    "Training",
    "TrainingInterrupted",
    "TuneResult",
    "attach_best_model_checkpoint",
    "attach_checkpointing",
    "attach_default_handlers",
    "attach_early_stopping",
    "attach_epoch_header",
    "attach_epoch_stats",
    "attach_evaluation",
    "attach_loss_logging",
    "attach_metrics_csv",
    "attach_one_cycle_lr",
    "attach_progress_bar",
    "attach_pruning",
    "attach_tensorboard",
    "build_model",
    "claim_run_directory",
    "class_indices",
    "create_evaluator",
    "create_trainer",
    "evaluate_checkpoint",
    "find_latest_checkpoint",
    "find_lr",
    "format_metrics",
    "get_data_loaders",
    "load_checkpoint",
    "load_fashion_mnist",
    "load_images",
    "load_model",
    "locate_fashion_mnist",
    "make_loader",
    "make_optimizer",
    "make_splits",
    "per_class_accuracy",
    "plot_confusion",
    "plot_curves",
    "predict",
    "read_config_file",
    "read_idx",
    "read_search_space",
    "recipe",
    "resolve_device",
    "score_function",
    "train",
    "tune",
    "write_durably",
]
