"""The documentation: it builds in strict mode, its references follow the code, its links resolve, its
Python runs as written, and every shell command it shows a user is run by a test or marked cluster-only."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

from fmnist_ignite.config import settings as config_module
from fmnist_ignite.config.fields import setting

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
QUIET_MKDOCS = {"NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}

# The commands the docs show a user, by their first words, and the test that runs each.
TESTED_COMMANDS = {
    "make run": "tests/test_examples.py::test_run_py_trains_an_epoch_on_the_real_data_with_honest_numbers",
    "make test": ".ci/run",
    "fmnist-ignite train [": "tests/test_settings.py",
    "fmnist-ignite train --recipe fast --seeds": "tests/test_statistics.py::"
    "test_seeds_train_one_run_each_resume_an_interrupted_one_and_summarise",
    "fmnist-ignite evaluate": "tests/test_examples.py::"
    "test_run_py_trains_an_epoch_on_the_real_data_with_honest_numbers",
    "fmnist-ignite evaluate runs/RUN/best_model_5_neg_val_loss=-0.4857.pt --top-losses": "tests/test_notebook.py::"
    "test_a_train_result_plots_and_looks_at_its_mistakes_as_a_saved_checkpoint_does",
    "fmnist-ignite predict": "tests/test_examples.py::test_run_py_trains_an_epoch_on_the_real_data_with_honest_numbers",
    "fmnist-ignite export": "tests/test_export.py::test_the_export_command_writes_beside_the_checkpoint",
    "fmnist-ignite predict runs/fast-1/model.onnx": "tests/test_export.py::"
    "test_predict_on_the_exported_onnx_gives_the_checkpoints_classes",
    "fmnist-ignite lr-find": "tests/test_lr_finder.py::"
    "test_lr_find_command_prints_the_suggestion_and_the_train_command",
    "fmnist-ignite tune": "tests/test_tuning.py::"
    "test_two_workers_share_one_study_and_its_budget_running_no_trial_twice",
    "fmnist-ignite compare": "tests/test_compare.py::test_two_trained_runs_compare_from_the_predictions_they_kept",
    "fmnist-ignite runs": "tests/test_runs_listing.py::test_csv_and_json_parse_and_say_the_same_rows",
    "fmnist-ignite runs --html": "tests/test_runs_listing.py::"
    "test_the_table_shows_itself_in_a_notebook_as_pandas_and_as_a_page_linking_each_report",
    "fmnist-ignite report": "tests/test_report_page.py::test_the_report_command_draws_the_figures_a_run_did_not",
    ".venv/bin/python benchmarks/throughput.py": "tests/test_benchmarks.py::"
    "test_throughput_benchmark_measures_all_three_pipelines",
    ".venv/bin/python benchmarks/time_to_accuracy.py": "tests/test_benchmarks.py::"
    "test_time_to_accuracy_benchmark_runs_a_recipe_and_writes_the_results_file_the_docs_are_made_from",
    "ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 .venv/bin/python benchmarks/"
    "time_to_accuracy.py": "tests/test_benchmarks.py::"
    "test_time_to_accuracy_benchmark_runs_a_recipe_and_writes_the_results_file_the_docs_are_made_from",
    "ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 .venv/bin/python benchmarks/"
    "profile_run.py": "tests/test_benchmarks.py::test_the_profile_cuts_a_whole_run_into_phases_that_add_up_to_it",
    "ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 .venv/bin/python benchmarks/"
    "ablation.py": "tests/test_benchmarks.py::"
    "test_the_ablation_runs_each_variant_per_seed_and_writes_what_the_records_page_is_made_from",
    ".venv/bin/python docs/gen_speed.py": "tests/test_speed_docs.py::"
    "test_a_number_changed_by_hand_or_a_changed_results_file_fails_the_check",
    ".venv/bin/python benchmarks/overhead.py": "tests/test_benchmarks.py::"
    "test_the_overhead_benchmark_times_each_per_iteration_item",
    ".venv/bin/python benchmarks/default_run.py": "tests/test_benchmarks.py::"
    "test_the_floor_and_the_ignite_example_pattern_train_and_report",
    "PYTHON=.venv/bin/python sbatch": "tests/test_slurm.py::"
    "test_the_readmes_two_task_command_fits_the_node_and_trains_data_parallel",
}


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_reference", ROOT / "docs" / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def blocks(language: str) -> list[tuple[Path, str, str]]:
    """(page, the line before the block, the block) for each fenced block of ``language``."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in re.finditer(rf"(?:^(.*)\n)?^```{language}\n(.*?)^```", text, re.M | re.S):
            found.append((page, match[1] or "", match[2]))
    return found


def test_the_docs_build_in_strict_mode_offline(tmp_path):
    mkdocs = Path(sys.executable).with_name("mkdocs")
    if not mkdocs.exists():
        pytest.skip("mkdocs is not installed (pip install -e '.[dev]')")
    proc = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **QUIET_MKDOCS},
    )
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr
    config_page = (tmp_path / "site" / "reference" / "config" / "index.html").read_text()
    assert "peer_timeout" in config_page and "--peer-timeout" in config_page
    api_page = (tmp_path / "site" / "reference" / "api" / "index.html").read_text()
    assert "Thread-safe: call it from any thread" in api_page  # Training.stop's docstring


def test_a_setting_added_to_config_appears_in_the_generated_references(monkeypatch):
    @dataclasses.dataclass
    class Extended(config_module.Config):
        shiny_new: int = setting(7, "a setting only this test has ({default})", on_resume=True)

    monkeypatch.setattr(config_module, "Config", Extended)
    generator = load_generator()
    assert re.search(
        r"^\| `shiny_new` \| `--shiny-new` \| `7` \| yes \| yes \| a setting only this test has \(7\) \|$",
        generator.config_reference(),
        re.M,
    )
    assert "--shiny-new" in generator.cli_reference()


def test_the_readme_is_short_and_its_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 120  # what it is, two commands, one example, one table, where to go next
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if page.parent.name == "docs" and path.startswith("reference/"):
                continue  # generated when the site is built (checked by the strict build above)
            assert resolved.exists(), f"{page.name}: link to {target}: no such file"
            if anchor:
                slugs = {slug(line.lstrip("#")) for line in resolved.read_text().splitlines() if line.startswith("#")}
                assert anchor in slugs, f"{page.name}: link to {target}: no such heading"


def slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize(
    "page, block",
    [(page, block) for page, before, block in blocks("python") if before != "<!-- compose-example -->"],
    ids=lambda value: value.name if isinstance(value, Path) else None,
)
def test_every_python_block_runs_as_written(page, block, real_data, tmp_path):
    """(The composing example is run by tests/test_examples.py.)"""
    script = tmp_path / "block.py"
    script.write_text(block)
    env = {**os.environ, "FMNIST_DATA_DIR": str(real_data), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{page.name}:\n{block}\n{proc.stderr}"


def commands(block: str) -> list[str]:
    """The commands of a shell block, comments left out: a line ending in a backslash is continued on the
    next, as the shell joins them (``train \\`` then ``  --seeds 3`` is ``train --seeds 3``)."""
    found, continued = [], ""
    for line in block.splitlines():
        code = line.split("#")[0].rstrip()
        command = f"{continued} {code.strip()}".strip()
        if code.endswith("\\") and code == line.rstrip():  # (a backslash in a comment continues nothing)
            continued = command.removesuffix("\\").rstrip()
            continue
        continued = ""
        if command:
            found.append(command)
    assert not continued, f"the block ends in a continued line: {block!r}"
    return found


def test_every_shell_command_shown_to_a_user_is_run_by_a_test():
    for page, _, block in blocks("sh"):
        for command in commands(block):
            starts = [start for start in TESTED_COMMANDS if command.startswith(start)]
            assert starts, f"{page.name}: `{command}` is run by no test"
            test = TESTED_COMMANDS[max(starts, key=len)]  # the most specific
            path, _, name = test.partition("::")
            assert (ROOT / path).exists() and (not name or f"def {name}(" in (ROOT / path).read_text()), test


def test_every_test_the_docs_name_exists():
    for page in PAGES:
        for path, name in re.findall(r"`(?:tests/)?(test_\w+\.py)(?:::(\w+))?`", page.read_text()):
            source = ROOT / "tests" / path
            assert source.exists(), f"{page.name}: {path}: no such test file"
            assert not name or f"def {name}(" in source.read_text(), f"{page.name}: {path}::{name}: no such test"
