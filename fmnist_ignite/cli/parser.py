"""The command line's parsers: one flag per ``Config`` setting, and the layers a run's configuration is
built from. Parsing imports no torch: ``--help``, ``--version`` and a bad flag answer at once."""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Iterable
from typing import Any, NoReturn, TypeVar

from fmnist_ignite import __version__
from fmnist_ignite.config.commands import (
    EvaluateSettings,
    ExportSettings,
    LrFindSettings,
    PredictSettings,
    ReportSettings,
    RunsSettings,
    TuneSettings,
)
from fmnist_ignite.config.fields import Setting
from fmnist_ignite.config.files import read_config_file
from fmnist_ignite.config.recipes import RECIPES
from fmnist_ignite.config.settings import Config, settings
from fmnist_ignite.run.rundir import resumed_settings


class Parser(argparse.ArgumentParser):
    """argparse, for people: a flag is never taken for a longer one it begins (``--epoch`` is no
    ``--epochs``); a mistake is one line (``run.py: error: ...``, with the nearest choice or flag when there
    is one) and a pointer to ``--help``, not the whole usage; exit code 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {self.with_suggestion(message)}\nSee: {self.prog} --help\n")

    def with_suggestion(self, message: str) -> str:
        """``message`` with "did you mean ..." for a mistyped choice or flag."""
        if "invalid choice: " in message and message.startswith("argument "):
            flag = message.removeprefix("argument ").split(":", 1)[0].split("/")[0]
            wrong = message.split("invalid choice: ", 1)[1].split(" ", 1)[0].strip("'\",")
            options = [str(c) for a in self._actions if flag in a.option_strings and a.choices for c in a.choices]
        elif message.startswith("unrecognized arguments: "):
            words = message.removeprefix("unrecognized arguments: ").split()
            wrong = words[0].split("=", 1)[0] if words else ""
            options = [flag for action in self._actions for flag in action.option_strings]
        else:
            return message
        near = [option for option in difflib.get_close_matches(wrong, options, n=2, cutoff=0.6) if option != wrong]
        return f"{message} (did you mean {near[0]}?)" if wrong and near else message

    def parse_command(self, argv: list[str]) -> argparse.Namespace:
        """Parse a subcommand's line; a flag the subcommand does not know is its error, said by it (with its
        name and its ``--help``), not the top-level parser's."""
        args, extras = self.parse_known_args(argv)
        if extras:
            commands = next(a for a in self._actions if isinstance(a, argparse._SubParsersAction))
            commands.choices[args.command].error(f"unrecognized arguments: {' '.join(extras)}")
        return args


def build_parser(prog: str = "run.py") -> Parser:
    """The parser of ``examples/run.py`` and ``fmnist-ignite train``."""
    parser = Parser(
        prog=prog,
        description="Train the tutorial's MLP on Fashion-MNIST with PyTorch-Ignite: train, select on a "
        "validation split, then score the test set once. Defaults are the recipe's (the tutorial's: "
        "SGD, lr 1e-3, momentum 0.9, batch 64, 5 epochs).",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--version", action="version", version=f"fmnist-ignite {__version__}")
    add_train_arguments(parser)
    return parser


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The training flags: --config, --recipe, and one per ``Config`` setting that has a flag (config/settings.py
    defines them). A flag given overrides the recipe; the rest come from it."""
    p.add_argument(
        "--config",
        metavar="FILE",
        help="settings from a YAML, JSON or TOML file (any Config field, and a recipe); flags given override it. "
        "A run's OUTPUT_DIR/config.json replays that run",
    )
    p.add_argument("--recipe", choices=RECIPES, help="preset hyperparameters (default: tutorial)")
    add_setting_arguments(p, settings().values())


def add_setting_arguments(p: argparse.ArgumentParser, table: Iterable[Setting]) -> None:
    """One flag per setting of ``table`` that has one (a ``Config``'s or a subcommand's), its help and checks
    from the setting. The parser's defaults are suppressed: a flag not given is absent, and the dataclass's
    default applies."""
    for s in table:
        text, option = s.help.format(default=s.default), s.option
        if option is None:
            continue
        if s.flag == "value":
            p.add_argument(
                option,
                type=s.value_type,
                choices=s.choices or None,
                metavar=s.metavar,
                help=text,
                required=s.required,
                default=argparse.SUPPRESS,
            )
        else:  # a switch, or a negated flag: NEGATED_FLAGS turns it into its setting
            p.add_argument(option, action="store_true", help=text, default=argparse.SUPPRESS)


SubcommandSettings = TypeVar(
    "SubcommandSettings",
    TuneSettings,
    LrFindSettings,
    EvaluateSettings,
    PredictSettings,
    ExportSettings,
    RunsSettings,
    ReportSettings,
)


def dests(of: type) -> dict[str, str]:
    """The argparse destination of each flag of a settings dataclass, and the field it sets (``no_calibrate``
    sets ``calibrate``)."""
    return {("no_" if s.flag == "negated" else "") + name: name for name, s in settings(of).items()}


def settings_from(args: argparse.Namespace, of: type[SubcommandSettings]) -> SubcommandSettings:
    """A subcommand's settings from its flags, checked; the flags not given take the dataclass's defaults."""
    fields = dests(of)
    given: dict[str, Any] = {fields[k]: (not v if k != fields[k] else v) for k, v in vars(args).items() if k in fields}
    return of(**given).validate()


def without(args: argparse.Namespace, of: type) -> argparse.Namespace:
    """The training flags of ``args``: those of a subcommand's own settings (``of``) left out."""
    return argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in dests(of)})


# The dest of each --no-NAME flag, and the setting it turns off.
NEGATED_FLAGS = {f"no_{name}": name for name, s in settings().items() if s.flag == "negated"}


def config_from_args(args: argparse.Namespace) -> Config:
    """The configuration of a run, in layers: the defaults (the tutorial's), or the configuration a
    resumed run saved; then a ``--config`` file (its recipe, then its keys); then ``--recipe``; then
    every flag given. A resume thus continues the same run without retyping its flags; a file,
    recipe or flag given with it must agree with it (the run checks that). What the environment decides
    is not taken from the saved run: each process's own environment decides it (``Config.with_environment``).
    """
    given = {key: value for key, value in vars(args).items() if key != "command"}
    name = given.pop("recipe", None)
    file = read_config_file(given.pop("config")) if "config" in given else {}
    for flag, field in NEGATED_FLAGS.items():
        if given.pop(flag, False):
            given[field] = False
    saved = resumed_settings(Config(**given)) if given.get("resume") else None
    known = settings()
    # Where the run is now is not what it saved: a copied run directory continues where it lies.
    base = {
        k: v for k, v in (saved or {}).items() if k in known and not known[k].from_environment and k != "output_dir"
    }
    return Config(**{**base, **file, **RECIPES.get(name, {}), **given})


def fixed_settings(args: argparse.Namespace) -> tuple[str, ...]:
    """The settings the user gave by flag or in the ``--config`` file (its recipe's do not count)."""
    given = {NEGATED_FLAGS.get(key, key) for key in vars(args)}
    from_file = read_config_file(args.config, with_recipe=False) if "config" in vars(args) else {}
    return tuple(sorted(given.union(from_file) & set(settings())))


def build_command_parser() -> Parser:
    """``fmnist-ignite {train,evaluate,predict,export,compare,runs,report,lr-find,tune}``."""
    parser = Parser(prog="fmnist-ignite", description="Fashion-MNIST with PyTorch-Ignite.")
    parser.add_argument("--version", action="version", version=f"fmnist-ignite {__version__}")
    commands = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="{train,evaluate,predict,export,compare,runs,report,lr-find,tune}",
        parser_class=Parser,
    )
    add_train_arguments(
        commands.add_parser(
            "train", help="train a model (the flags of examples/run.py)", argument_default=argparse.SUPPRESS
        )
    )
    evaluate = commands.add_parser(
        "evaluate",
        help="test accuracy, loss and per-class table of a checkpoint",
        argument_default=argparse.SUPPRESS,
    )
    evaluate.add_argument(
        "checkpoint",
        metavar="RUN_OR_CHECKPOINT",
        help="a run directory (its best model), best_model_*.pt or a training checkpoint",
    )
    train = settings()
    add_setting_arguments(evaluate, [train["data_dir"], train["device"], *settings(EvaluateSettings).values()])
    predict_parser = commands.add_parser(
        "predict", help="classify 28x28 grayscale images (PNG, or IDX files)", argument_default=argparse.SUPPRESS
    )
    predict_parser.add_argument(
        "checkpoint",
        metavar="RUN_OR_CHECKPOINT",
        help="a run directory (its best model), best_model_*.pt, a training checkpoint, or a model.onnx from export",
    )
    predict_parser.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="a 28x28 grayscale image file (PNG, or any format PIL reads: JPEG, BMP, ...), or an IDX file of images",
    )
    add_setting_arguments(predict_parser, settings(PredictSettings).values())
    export = commands.add_parser(
        "export",
        help="write a checkpoint's model as ONNX or a torch.export program, for use without this library",
        argument_default=argparse.SUPPRESS,
    )
    export.add_argument(
        "checkpoint", metavar="RUN_OR_CHECKPOINT", help="a run directory (its best model) or a checkpoint"
    )
    add_setting_arguments(export, settings(ExportSettings).values())
    compare = commands.add_parser(
        "compare",
        help="is one run better than another? paired tests on the test images, from each run's kept predictions",
    )
    compare.add_argument("runs", nargs="+", metavar="RUN_DIR", help="two run directories or more")
    runs = commands.add_parser(
        "runs",
        help="a table of the runs under directories: status, epochs, accuracies, ECE, time, the settings that differ",
        argument_default=argparse.SUPPRESS,
    )
    runs.add_argument(
        "dirs",
        nargs="*",
        default=["runs"],
        metavar="DIR",
        help="directories to look in for run directories, recursively (default: runs)",
    )
    add_setting_arguments(runs, settings(RunsSettings).values())
    report = commands.add_parser(
        "report",
        help="write each run's report.html: one self-contained page of all its results",
        argument_default=argparse.SUPPRESS,
    )
    report.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    add_setting_arguments(report, settings(ReportSettings).values())
    lr_find = commands.add_parser(
        "lr-find",
        help="suggest a learning rate with Ignite's FastaiLRFinder (the training flags, a few hundred batches)",
        argument_default=argparse.SUPPRESS,
    )
    add_train_arguments(lr_find)
    add_setting_arguments(lr_find, settings(LrFindSettings).values())
    tune_parser = commands.add_parser(
        "tune",
        help="search hyperparameters with Optuna; trials are training runs scored on the validation split",
        argument_default=argparse.SUPPRESS,
    )
    add_train_arguments(tune_parser)
    add_setting_arguments(tune_parser, settings(TuneSettings).values())
    return parser
