"""fmnist-ignite: train and evaluate the tutorial's Fashion-MNIST MLP with PyTorch-Ignite."""

from fmnist_ignite.checkpoints import RandomState, load_checkpoint
from fmnist_ignite.config import RECIPES, Config, recipe
from fmnist_ignite.data import (
    CLASS_NAMES,
    ImageDataset,
    TensorLoader,
    get_data_loaders,
    load_fashion_mnist,
    locate_fashion_mnist,
    make_loader,
    make_splits,
    read_idx,
)
from fmnist_ignite.engines import class_indices, create_evaluator, create_trainer, make_optimizer, resolve_device
from fmnist_ignite.errors import FmnistError, TrainingInterrupted
from fmnist_ignite.handlers import (
    MetricsHistory,
    attach_best_model_checkpoint,
    attach_checkpointing,
    attach_early_stopping,
    attach_epoch_header,
    attach_evaluation,
    attach_loss_logging,
    attach_one_cycle_lr,
    attach_progress_bar,
    format_metrics,
    score_function,
)
from fmnist_ignite.inference import evaluate_checkpoint, load_images, load_model, predict
from fmnist_ignite.model import Net
from fmnist_ignite.reports import (
    attach_epoch_stats,
    attach_metrics_csv,
    attach_tensorboard,
    per_class_accuracy,
    plot_confusion,
    plot_curves,
)
from fmnist_ignite.rundir import (
    DurableDiskSaver,
    RunDirectory,
    claim_run_directory,
    find_latest_checkpoint,
    write_durably,
)
from fmnist_ignite.training import Training, TrainResult, attach_default_handlers, train

__version__ = "0.1.0"

__all__ = [
    "CLASS_NAMES",
    "RECIPES",
    "Config",
    "DurableDiskSaver",
    "FmnistError",
    "ImageDataset",
    "MetricsHistory",
    "Net",
    "RandomState",
    "RunDirectory",
    "TensorLoader",
    "TrainResult",
    "Training",
    "TrainingInterrupted",
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
    "attach_tensorboard",
    "claim_run_directory",
    "class_indices",
    "create_evaluator",
    "create_trainer",
    "evaluate_checkpoint",
    "find_latest_checkpoint",
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
    "read_idx",
    "recipe",
    "resolve_device",
    "score_function",
    "train",
    "write_durably",
]
