"""The reference pages, generated from the code when the docs are built (mkdocs-gen-files runs this):
the command line from the argument parser, the configuration from ``Config``'s settings, the API from
the public names' docstrings. A setting or a public name added to the code appears here with no page
edited by hand."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from fmnist_ignite import _WHERE
from fmnist_ignite.cli.parser import build_command_parser, build_parser
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
from fmnist_ignite.config.settings import settings

ROOT = Path(__file__).resolve().parent.parent


def cli_reference() -> str:
    """Each command's ``--help``, as argparse prints it."""
    os.environ["COLUMNS"] = (
        "80"  # the same page on every terminal width, and it fits the column (~85 characters)
    )
    parser = build_command_parser()
    commands = next(
        action for action in parser._actions if action.dest == "command"
    ).choices  # argparse's own table
    parts = [
        "# Command-line reference\n",
        "Generated from the argument parsers. `python examples/run.py` takes the flags of `fmnist-ignite train`.\n",
        "## fmnist-ignite\n",
        f"```text\n{parser.format_help()}```\n",
    ]
    for name, sub in commands.items():
        parts += [
            f"## fmnist-ignite {name}\n",
            f"```text\n{sub.format_help()}```\n",
        ]
    parts += [
        "## examples/run.py\n",
        f"```text\n{build_parser().format_help()}```\n",
    ]
    return "\n".join(parts)


def config_reference(table: dict[str, Setting] | None = None) -> str:
    """One row per ``Config`` field: flag, default, whether a resume may change it, whether the tuner may
    search it, and its help."""
    table = settings() if table is None else table
    rows = [
        "# Configuration reference\n",
        "Generated from `Config`: every setting, as a flag, a key of a `--config` file, or a `Config(...)` "
        "argument. *Resume*: whether `--resume` may change it. *Tuner*: whether `fmnist-ignite tune` may search it.\n",
        "| setting | flag | default | resume | tuner | what it does |",
        "|---|---|---|---|---|---|",
    ]
    for name, setting in table.items():
        flag = f"`{setting.option}`" if setting.option else "(file or Python)"
        yes = {True: "yes", False: "no"}
        rows.append(
            f"| `{name}` | {flag} | `{setting.default!r}` | {yes[setting.on_resume]} | {yes[setting.tunable]} "
            f"| {help_text(setting)} |"
        )
    for command, cls, python in (
        ("tune", TuneSettings, "`tune(config, TuneSettings(...))`"),
        ("lr-find", LrFindSettings, "`find_lr(config, LrFindSettings(...))`"),
        ("evaluate", EvaluateSettings, None),
        ("predict", PredictSettings, None),
        ("export", ExportSettings, "`export_model(source, format, output)`"),
        ("runs", RunsSettings, "`list_runs(*dirs, sort=..., status=...)`"),
        ("report", ReportSettings, "`report(run_dir, data_dir, output, top_k)`"),
    ):
        rows += [
            f"\n## fmnist-ignite {command}\n",
            f"The flags `fmnist-ignite {command}` has of its own (`{cls.__name__}`)"
            + (f"; in Python, {python}.\n" if python else ".\n"),
            "| setting | flag | default | what it does |",
            "|---|---|---|---|",
        ]
        for name, setting in settings(cls).items():
            default = "(required)" if setting.required else f"`{setting.default!r}`"
            rows.append(
                f"| `{name}` | `{setting.option}` | {default} | {help_text(setting)} |"
            )
    return "\n".join(rows) + "\n"


def help_text(setting: Setting) -> str:
    """A setting's help as a table cell: its default and its range said, and no ``|`` that would split the cell."""
    text = setting.help.replace("{default}", repr(setting.default))
    if setting.range_words:
        text += f" (must be {setting.range_words})"
    return text.replace("|", "\\|")


def api_reference() -> str:
    """The public names of ``fmnist_ignite``, by module, with their docstrings (mkdocstrings)."""
    by_module = defaultdict(list)
    for name, module in _WHERE.items():
        by_module[module].append(name)
    parts = [
        "# API reference\n",
        "Every public name of `fmnist_ignite`, by the module that defines it.\n",
    ]
    for module in sorted(by_module):
        parts.append(f"## fmnist_ignite.{module}\n")
        for name in sorted(by_module[module]):
            parts.append(
                f"::: fmnist_ignite.{module}.{name}\n    options:\n      heading_level: 3\n"
            )
    return "\n".join(parts)


def notebook_page(path: Path = ROOT / "examples" / "tutorial.ipynb") -> str:
    """The example notebook as a page: its Markdown cells as they are, its code cells as Python blocks
    (stored without outputs: run it to see them)."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    parts = [
        "<!-- generated from examples/tutorial.ipynb; run the notebook to see its outputs -->\n",
    ]
    for cell in notebook.cells:
        markdown = cell.source.replace(
            "](../README.md)", "](index.md)"
        )  # the notebook's links are from examples/
        parts.append(
            markdown
            if cell.cell_type == "markdown"
            else f"```python\n{cell.source}\n```"
        )
    return "\n\n".join(parts) + "\n"


def write_pages() -> None:
    import mkdocs_gen_files

    for path, text in (
        ("reference/cli.md", cli_reference()),
        ("reference/config.md", config_reference()),
        ("reference/api.md", api_reference()),
        ("tutorial.md", notebook_page()),
    ):
        with mkdocs_gen_files.open(path, "w") as page:
            page.write(text)


if __name__ in ("__main__", "<run_path>"):
    write_pages()
