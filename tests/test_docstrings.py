"""The public API's docstrings in one style (Google's, which the docs site renders: mkdocs.yml's
``docstring_style``): a summary line; every argument of a public function or method under ``Args:``, in
signature order, and no argument that is not there; a class's constructor arguments in the class's or its
``__init__``'s docstring; every public value with a docstring of its own."""

from __future__ import annotations

import dataclasses
import doctest
import inspect
import re

import griffe
import pytest
import yaml
from helpers import ROOT

import fmnist_ignite

SKIPPED = {"self", "cls"}
SETTINGS_CLASSES = {"Config", "TuneSettings", "LrFindSettings"}  # fields: the configuration reference's tables


def documented_arguments(doc: str) -> list[str]:
    """The names under a Google-style ``Args:`` section, in order."""
    section = re.search(r"^Args:\n((?:[ \t]+.*\n?|\n)+)", doc, re.M)
    if section is None:
        return []
    indent = min(len(line) - len(line.lstrip()) for line in section.group(1).splitlines() if line.strip())
    names = []
    for line in section.group(1).splitlines():
        if line.strip() and len(line) - len(line.lstrip()) == indent:
            names.append(re.split(r"[ (:]", line.strip(), maxsplit=1)[0].lstrip("*"))
    return names


def arguments(function: object) -> list[str]:
    """The arguments a caller gives, by name (``*args`` and ``**kwargs`` as written)."""
    signature = inspect.signature(function)  # type: ignore[arg-type]
    return [name for name in signature.parameters if name not in SKIPPED]


def public_callables() -> dict[str, tuple[object, str]]:
    """By public name: the callable whose arguments are documented, and the docstring they are in (a class's
    constructor: in the class's docstring or its own ``__init__``'s, not one it inherits)."""
    found = {}
    for name in sorted(fmnist_ignite.__all__):
        obj = getattr(fmnist_ignite, name)
        if inspect.isfunction(obj):
            found[name] = (obj, obj.__doc__ or "")
        elif inspect.isclass(obj) and name not in SETTINGS_CLASSES and not dataclasses.is_dataclass(obj):
            init = obj.__dict__.get("__init__")  # dataclasses: their fields are their attributes, checked below
            if init is not None and arguments(init):
                # each dedented on its own: before Python 3.13 a docstring keeps its source indentation
                found[name] = (init, inspect.cleandoc(obj.__doc__ or "") + "\n" + inspect.cleandoc(init.__doc__ or ""))
    return found


@pytest.mark.parametrize("name", sorted(public_callables()))
def test_every_argument_of_a_public_callable_is_under_args_in_order(name):
    function, doc = public_callables()[name]
    doc = inspect.cleandoc(doc)
    assert doc.strip(), f"{name} has no docstring"
    given = [a.lstrip("*") for a in arguments(function)]
    assert documented_arguments(doc) == given, f"{name}: Args: should list {given}"


def test_every_public_dataclass_says_its_fields_under_attributes():
    for name in sorted(fmnist_ignite.__all__):
        obj = getattr(fmnist_ignite, name)
        if not (inspect.isclass(obj) and dataclasses.is_dataclass(obj)) or name in SETTINGS_CLASSES:
            continue
        doc = inspect.cleandoc(obj.__doc__ or "")
        fields = [f.name for f in dataclasses.fields(obj) if not f.name.startswith("_")]
        section = re.search(r"^Attributes:\n((?:[ \t]+.*\n?|\n)+)", doc, re.M)
        assert section is not None, f"{name}: no Attributes: section"
        listed = documented_arguments("Args:\n" + section.group(1))
        assert listed == fields, f"{name}: Attributes: should list {fields}"


def test_every_public_value_has_a_docstring_the_api_page_shows():
    package = griffe.load("fmnist_ignite", search_paths=[str(ROOT)])
    shows_values = python_options().get("show_attribute_values", True)
    for name, module in fmnist_ignite._WHERE.items():
        if callable(getattr(fmnist_ignite, name)):
            continue
        attribute = package[f"{module}.{name}"]
        assert attribute.docstring is not None and attribute.docstring.value.strip(), name
        if shows_values:
            assert not re.search(r"\b_[A-Za-z]", str(attribute.value)), f"{name}'s shown value names a private name"


def python_options() -> dict:
    """The options mkdocs.yml gives mkdocstrings' Python handler."""
    plugins = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["plugins"]
    options = next(p["mkdocstrings"] for p in plugins if isinstance(p, dict) and "mkdocstrings" in p)
    return options["handlers"]["python"]["options"]


def test_the_site_renders_google_style_docstrings():
    assert python_options()["docstring_style"] == "google"


EXAMPLED = sorted(name for name in fmnist_ignite.__all__ if name.startswith(("attach_", "create_")))


@pytest.mark.parametrize("name", EXAMPLED)
def test_every_public_attach_and_create_function_shows_an_example_that_runs(name, tmp_path, monkeypatch):
    function = getattr(fmnist_ignite, name)
    assert "\nExamples:\n" in inspect.cleandoc(function.__doc__ or ""), f"{name} has no Examples: section"
    monkeypatch.chdir(tmp_path)  # an example that writes files writes them here
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = doctest.DocTestFinder(recurse=False).find(function, name, globs={})
    assert sum(len(test.examples) for test in tests) >= 3
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
