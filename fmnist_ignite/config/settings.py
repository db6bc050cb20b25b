"""Run configuration: one dataclass whose defaults are the tutorial's hyperparameters.

Each field is defined once, with its ``Setting``: its help, its flag, whether a resume may change it,
whether the tuner may search it, and (for a few) how the environment decides it. The command line,
the configuration files, the resume check and the tuner read them from there (``settings()``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmnist_ignite.config.fields import Setting, check_values, refuse, refusing_unknown_fields, setting, settings_of

MODEL_NAMES = ("mlp", "cnn")  # built in: fmnist_ignite.core.models; "custom" is a model of your own
OPTIMIZERS = ("sgd", "adam", "adamw", "muon")  # muon: Muon for the weight matrices, AdamW for the rest
DEVICES = ("auto", "cpu", "cuda")
LOADERS = ("tensor", "dataloader")
MONITORS = ("loss", "accuracy")
SCHEDULERS = ("constant", "onecycle")
PRECISIONS = ("auto", "fp32", "bf16")
BACKENDS = (None, "gloo", "nccl")
TRACKERS = ("mlflow", "wandb")  # handlers.tracking attaches Ignite's MLflowLogger, WandBLogger
DISPLAYS = ("auto", "notebook", "terminal", "plain")  # fmnist_ignite.ui.display picks for auto
TRAIN_SET_SIZE = 60_000
# Images scored at once: 500, not more; the CNN's activations for 1,000 images overflow the CPU's caches (3x slower).
EVAL_BATCH_SIZE = 500
DEFAULT_DATA_DIR = "data"
SYSTEM_DATA_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
MAX_SEED = 2**32 - 1  # what every generator a run seeds takes (NumPy's the narrowest)
MAX_PEER_TIMEOUT = 7 * 24 * 3600
MAX_PROCESSES = 1024
MAX_THREADS = 4096
MAX_COUNT = 1_000_000  # epochs: a count beyond it is a typo, not a plan


def best_row(rows: Iterable[dict], key: str) -> dict | None:
    """The epoch a run keeps: the row with the best ``key`` (``val_loss``: the lowest; an accuracy: the
    highest), the first on ties; None when no row has it. The one place this rule is written."""
    scored = [row for row in rows if row.get(key) is not None]
    if not scored:
        return None
    sign = -1.0 if key.endswith("loss") else 1.0
    return max(scored, key=lambda row: sign * row[key])


def check_data_dir(data_dir: str) -> None:
    """A data directory the user named must exist; only the default may be absent (then it is looked for elsewhere)."""
    path = Path(data_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise refuse(Config, "data_dir", data_dir, "a file, not a directory")
    if not path.exists() and data_dir != DEFAULT_DATA_DIR:
        raise refuse(Config, "data_dir", data_dir, "no such directory")


def download_allowed(environ: Mapping[str, str]) -> bool:
    """``FMNIST_ALLOW_DOWNLOAD=1`` allows downloads and ``=0`` turns them off, anywhere; unset, they are off
    inside a SLURM job only (compute nodes seldom reach the internet, and a job should not hang on it)."""
    said = environ.get("FMNIST_ALLOW_DOWNLOAD", "").strip()
    if said in ("0", "1"):
        return said == "1"
    return "SLURM_JOB_ID" not in environ


def system_copy(environ: Mapping[str, str]) -> str:
    """Where a system copy of the data set is looked for: ``$FMNIST_DATA_DIR``, else Debian's directory."""
    return environ.get("FMNIST_DATA_DIR") or SYSTEM_DATA_DIR


def settings(of: type | None = None) -> dict[str, Setting]:
    """Each field's ``Setting`` of ``of`` (``Config`` by default), by name, in the fields' order."""
    return settings_of(of or Config)


def environment_settings() -> dict[str, object]:
    """What the environment decides of the settings that defer to it, by name: the one place it is read."""
    return {name: s.from_environment(os.environ) for name, s in settings().items() if s.from_environment}


@refusing_unknown_fields
@dataclass
class Config:
    """Everything one training run needs; ``validate()`` turns a bad value into a one-line error."""

    epochs: int = setting(5, "maximum number of epochs ({default})", on_resume=True, at_least=1, at_most=MAX_COUNT)
    batch_size: int = setting(64, "training batch size ({default})", at_least=1)
    lr: float = setting(1e-3, "learning rate ({default})", above=0)
    momentum: float = setting(0.9, "SGD momentum ({default})", at_least=0)
    optimizer: str = setting(
        "sgd",
        "optimizer ({default}); muon: torch.optim.Muon for the weight matrices, AdamW for the rest",
        choices=OPTIMIZERS,
    )
    ns_steps: int = setting(
        5,
        "Newton-Schulz iterations a step of --optimizer muon orthogonalises with ({default}; 3 is cheaper: on a "
        "CPU they are most of a Muon step)",
        at_least=1,
        at_most=10,
    )
    weight_decay: float = setting(0.0, "weight decay ({default})", at_least=0)
    dropout: float = setting(0.0, "dropout after each ReLU ({default}: the tutorial's model)", at_least=0, below=1)
    # "custom" (no flag) when train() is given a model of your own
    model: str = setting(
        "mlp", "the tutorial's MLP ({default}, the default) or a small CNN", choices=MODEL_NAMES, accepted=("custom",)
    )
    label_smoothing: float = setting(
        0.0, "of the training loss only; validation and test loss stay plain ({default})", at_least=0, below=1
    )
    scheduler: str = setting(
        "constant",
        "learning-rate schedule ({default}); onecycle: warm up to --lr over the first quarter, then anneal",
        choices=SCHEDULERS,
    )
    hflip: bool = setting(
        False,
        "flip each training image left-right with probability 1/2 (in the tensor loader, on the batch, drawn "
        "from a generator seeded by seed, epoch and batch: exactly resumable; validation and test never)",
        flag="switch",
    )
    shift: int = setting(
        0,
        "shift each training image by up to N pixels each way, zero-filled (like --hflip: seeded per batch, "
        "training batches only; {default}: off)",
        at_least=0,
        at_most=8,
        unit="pixels",
    )
    ema: float = setting(
        0.0,
        "keep an exponential moving average of the weights with this momentum per step (Ignite's EMAHandler; "
        "e.g. 0.01), and validate, select, checkpoint as best and test it ({default}: off)",
        at_least=0,
        below=1,
    )
    tta: bool = setting(
        False,
        "score validation and test on the mean of the logits of each image and its mirror image "
        "(test-time flips; training never sees them)",
        flag="switch",
    )
    patience: int = setting(0, "early-stopping patience in validations ({default}: off)", at_least=0)
    validate_every: int = setting(
        1,
        "validate (and so select the best weights, stop early, check the target) every N epochs and after the "
        "last ({default}: every epoch)",
        metavar="N",
        on_resume=True,
        at_least=1,
        unit="epochs",
    )
    target_accuracy: float | None = setting(
        None,
        "stop once validation accuracy reaches this fraction (e.g. 0.9) and say at which epoch and after how "
        "many seconds: time to target quality",
        metavar="FRACTION",
        above=0,
        below=1,
    )
    monitor: str = setting("loss", "validation metric that selects ({default})", choices=MONITORS)
    val_size: int = setting(
        5_000, "training images held out for validation ({default})", at_least=0, below=TRAIN_SET_SIZE
    )
    split_seed: int = setting(
        0,
        "seed of the validation split, apart from seed: every run selects on the same images",
        flag=None,
        at_least=0,
        at_most=MAX_SEED,
    )
    data_dir: str = setting(
        DEFAULT_DATA_DIR,
        "where to look for (or download) Fashion-MNIST ({default})",
        on_resume=True,  # the data is verified by checksum wherever it lies
    )
    output_dir: str | None = setting(None, "checkpoint directory (runs/<date>-<time>)", on_resume=True, tunable=False)
    seed: int = setting(0, "seed of the initial weights and the data order ({default})", at_least=0, at_most=MAX_SEED)
    seeds: str | None = setting(
        None,
        "train once per seed, each run in OUTPUT_DIR/seed-N, then the mean, sd and t-interval of the accuracy "
        "over them: a list (0,1,2) or a count (3: --seed and the next two); the same command again continues "
        "unfinished seeds and keeps finished ones. With tune --confirm-top: the seeds of each re-trained trial",
        metavar="LIST|N",
        on_resume=True,
        tunable=False,
    )
    device: str = setting("auto", "device to run on ({default})", choices=DEVICES, on_resume=True)
    log_interval: int = setting(100, "print the loss every N batches ({default})", on_resume=True, at_least=1)
    one_hot: bool = setting(False, "use the tutorial's one-hot float targets", flag="switch")
    loader: str = setting("tensor", "in-memory tensors, or torchvision-style ({default})", choices=LOADERS)
    progress: bool = setting(
        True, "no progress bar (also off when not a terminal)", flag="negated", on_resume=True, tunable=False
    )
    display: str = setting(
        "auto",
        "how the run shows itself: {default} (a live view in a Jupyter notebook, text lines and a progress bar "
        "on a terminal, text lines alone in a file or a SLURM log), or one of them forced",
        choices=DISPLAYS,
        on_resume=True,
        tunable=False,
    )
    n_saved: int = setting(2, "training-state checkpoints kept ({default})", flag=None, at_least=1)
    threads: int | None = setting(
        None, "CPU threads for torch (torch's default: one per core)", on_resume=True, at_least=1, at_most=MAX_THREADS
    )
    precision: str = setting(
        "auto",
        "bf16 autocast or fp32; {default} (the default): the faster of the two by a few timed steps of the run's "
        "model where the CPU or GPU computes bf16 natively, else fp32",
        choices=PRECISIONS,
    )
    eval_batch_size: int = setting(
        EVAL_BATCH_SIZE, "evaluation batch size ({default})", flag=None, on_resume=True, at_least=1
    )
    verify_data: bool = setting(True, "check shapes and checksums of the real data set", flag=None)
    tensorboard: bool = setting(
        False, "log to OUTPUT_DIR/tb (needs the tensorboard package)", flag="switch", on_resume=True
    )
    tracker: str | None = setting(
        None,
        "track the run in MLflow, W&B or both (mlflow, wandb, mlflow,wandb), offline by default: MLflow in "
        "PARENT/mlflow.db unless MLFLOW_TRACKING_URI is set, W&B offline unless WANDB_MODE is set",
        metavar="NAMES",
        on_resume=True,
        tunable=False,
    )
    plots: bool = setting(True, "skip curves.png and confusion.png", flag="negated", on_resume=True, tunable=False)
    nproc_per_node: int = setting(
        1, "data-parallel processes on this machine ({default})", at_least=1, at_most=MAX_PROCESSES
    )
    backend: str | None = setting(
        None, "torch.distributed backend (nccl with CUDA, else gloo)", choices=BACKENDS[1:], on_resume=True
    )
    nnodes: int = setting(1, "machines taking part ({default})", at_least=1, at_most=MAX_PROCESSES)
    node_rank: int = setting(0, "this machine's rank among them ({default})", on_resume=True, at_least=0)
    master_addr: str = setting("127.0.0.1", "address of the node-rank-0 machine ({default})", on_resume=True)
    master_port: int = setting(29500, "a free port on it ({default})", on_resume=True, at_least=1, at_most=65535)
    peer_timeout: int = setting(
        300,
        "seconds a data-parallel process waits for the others (to join, or at any exchange) before it gives up "
        "({default})",
        on_resume=True,
        tunable=False,
        at_least=1,
        at_most=MAX_PEER_TIMEOUT,
        unit="seconds",
    )
    resume: str | None = setting(
        None,
        "continue a run from a checkpoint file, or 'auto': the newest intact one in --output-dir (else in the "
        "newest run in runs/); the run's saved settings are used, and only flags that do not change the result "
        "(--epochs, --device, --threads, ...) may be given",
        metavar="PATH|auto",
        on_resume=True,
        tunable=False,
    )
    restore_best: bool = setting(
        True,
        "score the test set with the last weights, not the best",
        flag="negated",
        on_resume=True,  # which weights score the test set at the end, not how they are trained
    )
    score_test: bool = setting(
        True,
        "False: the test split is never loaded into a loader nor read (the tuner's trials)",
        flag=None,
        on_resume=True,
        tunable=False,
    )
    allow_download: bool | None = setting(
        None,
        "may torchvision download the data set; None: the environment decides (not inside a SLURM job, "
        "unless FMNIST_ALLOW_DOWNLOAD=1)",
        flag=None,
        on_resume=True,
        tunable=False,
        from_environment=download_allowed,
    )
    system_data_dir: str | None = setting(
        None,
        f"where a system copy of the data set lies; None: $FMNIST_DATA_DIR, else {SYSTEM_DATA_DIR}",
        flag=None,
        on_resume=True,
        tunable=False,
        from_environment=system_copy,
    )

    def validate(self, check_paths: bool = True) -> Config:
        """Raise ``SettingError`` naming the first bad setting; return self so calls can chain. Each field's own
        rules (type, choices, range) are its ``Setting``'s; here are the rules between fields. Without
        ``check_paths`` the data directory need not exist here (a run's saved settings, read on another machine)."""
        check_values(self)
        rules = [
            (self.node_rank < self.nnodes, "node_rank", "must be below {nnodes}"),
            (self.loader == "tensor" or not self.hflip, "hflip", "needs {loader} tensor"),
            (self.loader == "tensor" or not self.shift, "shift", "needs {loader} tensor"),
            (
                all(name in TRACKERS for name in self.trackers) and len(set(self.trackers)) == len(self.trackers),
                "tracker",
                f"one or both of {', '.join(TRACKERS)}, comma-separated",
            ),
            (
                self.loader == "tensor" or self.world_size == 1,
                "loader",
                "data-parallel training shards the tensor loader: use tensor with several processes",
            ),
            (
                self.batch_size % self.world_size == 0,
                "batch_size",
                f"the total over {self.world_size} processes: make it a multiple of the number of processes",
            ),
            (
                self.patience == 0 or self.val_size > 0,
                "patience",
                "early stopping needs a validation set: set {val_size} above 0",
            ),
            (
                self.target_accuracy is None or self.val_size > 0,
                "target_accuracy",
                "a target accuracy is reached on the validation set: set {val_size} above 0",
            ),
        ]
        for holds, name, problem in rules:
            if not holds:
                raise refuse(Config, name, getattr(self, name), problem)
        if check_paths:
            check_data_dir(self.data_dir)
        return self

    @property
    def trackers(self) -> tuple[str, ...]:
        """The experiment trackers ``tracker`` names (``"mlflow,wandb"``: both), in order."""
        return tuple(name.strip() for name in self.tracker.split(",")) if self.tracker else ()

    @property
    def world_size(self) -> int:
        """Processes asked for on the command line (torchrun's are counted by ignite.distributed)."""
        return self.nproc_per_node * self.nnodes

    def replace(self, **changes: Any) -> Config:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def with_environment(self) -> Config:
        """A copy with the settings left None that defer to the environment (``allow_download``,
        ``system_data_dir``) decided by it: what an entry point calls, so the library reads no environment."""
        found = environment_settings()
        return self.replace(**{name: value for name, value in found.items() if getattr(self, name) is None})
