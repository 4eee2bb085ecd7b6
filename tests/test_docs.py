"""The docs follow the code: the generated pages equal a fresh generation, every command has help,
every ``ARCHIVE_*`` variable is in the settings registry, and README.md stays a short front page.

Like sqlite-utils' docs tests: the commands and options are read from the CLI itself (through
click, by ``docs/gen_ref.py``'s walker), and a page out of step says which command or option it
misses. Nothing here loads a model.
"""

from __future__ import annotations

import difflib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import typer

from archive.cli.app import app
from indexer import settings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CLI_PAGE = "docs/reference/cli.md"
README_MAX_LINES = 200
ENV_NAME = re.compile(r"\bARCHIVE_[A-Z0-9]+(?:_[A-Z0-9]+)*\b")
CODE_DIRS = ("archive", "indexer", "search")


def _load_gen_ref() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_ref", ROOT / "docs" / "gen_ref.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_ref = _load_gen_ref()


# -- the generated pages ---------------------------------------------------------------------------
@pytest.mark.parametrize("page", sorted(gen_ref.PAGES))
def test_generated_page_is_up_to_date(page: str) -> None:
    path = ROOT / page
    fresh = gen_ref.PAGES[page]()
    committed = path.read_text(encoding="utf-8") if path.is_file() else ""
    if committed != fresh:
        diff = "".join(
            list(
                difflib.unified_diff(
                    committed.splitlines(True), fresh.splitlines(True), f"{page} (committed)", f"{page} (from the code)"
                )
            )[:40]
        )
        pytest.fail(f"{page} is out of date with the code: run `make docs` and commit it.\n{diff}")


def cli_page_problems(text: str) -> list[str]:
    """What the CLI reference page ``text`` lacks or has too many of, one line per problem."""
    sections = re.split(r"^#{2,4} `(archive[^`]*)`\s*$", text, flags=re.MULTILINE)
    documented = {sections[i]: sections[i + 1] for i in range(1, len(sections) - 1, 2)}
    problems: list[str] = []
    known = {gen_ref.display(p) for p, _ in gen_ref.cli_commands()}
    for name in sorted(set(documented) - known):
        problems.append(f"`{name}`: in {CLI_PAGE} but not in the CLI (stale docs?)")
    for path, cmd in gen_ref.leaf_commands().items():
        name = gen_ref.display(path)
        if name not in documented:
            problems.append(f"`{name}`: undocumented (no `{name}` section in {CLI_PAGE}); run `make docs`")
            continue
        own = documented[name]
        for opt in gen_ref.option_names(cmd):
            if not re.search(rf"`{re.escape(opt)}`", own):
                problems.append(f"`{name} {opt}`: undocumented (not in its section of {CLI_PAGE}); run `make docs`")
        valid = set(gen_ref.option_names(cmd)) | {n for p in cmd.params for n in [*p.opts, *p.secondary_opts]}
        for opt in re.findall(r"^\| `(--[\w-]+)`", own, flags=re.MULTILINE):
            if opt not in valid:
                problems.append(f"{CLI_PAGE} lists `{name} {opt}`, which the CLI does not have (stale docs?)")
    return problems


def test_the_cli_page_documents_every_command_and_option() -> None:
    problems = cli_page_problems((ROOT / CLI_PAGE).read_text(encoding="utf-8"))
    assert not problems, "the CLI reference is out of step with the CLI:\n  " + "\n  ".join(problems)


def test_a_missing_option_is_reported() -> None:
    text = gen_ref.render_cli().replace("`--batch-size`", "`--batch`")
    problems = cli_page_problems(text)
    assert any(p.startswith("`archive index --batch-size`: undocumented") for p in problems), problems
    assert any("lists `archive index --batch`," in p for p in problems), problems


def test_a_missing_command_is_reported() -> None:
    text = gen_ref.render_cli().replace("## `archive info`", "## `archive information`")
    problems = cli_page_problems(text)
    assert any(p.startswith("`archive info`: undocumented") for p in problems), problems
    assert any(p.startswith("`archive information`: in ") for p in problems), problems


def test_every_command_has_help_text() -> None:
    missing = [gen_ref.display(p) for p, c in gen_ref.cli_commands() if not (c.help or "").strip()]
    assert not missing, f"commands without help text: {missing}"


def test_the_walker_finds_sub_commands_and_options() -> None:
    """Guard the walker itself: sub-groups are recursed into, options are found."""
    assert sorted(gen_ref.root_command().commands) == sorted(typer.main.get_command(app).commands)
    commands = gen_ref.leaf_commands()
    assert ("index",) in commands and ("label", "add") in commands and ("label", "remove") in commands
    assert {"--fps", "--json", "--store", "--quiet"} <= set(gen_ref.option_names(commands[("index",)]))


@pytest.mark.slow  # a fresh Python process
def test_importing_the_cli_does_not_import_torch() -> None:
    code = (
        "import sys, archive.cli, archive.cli.app; bad = {'torch', 'open_clip'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# -- settings --------------------------------------------------------------------------------------
def names_in_code() -> dict:
    """``{ARCHIVE_* name: first file that mentions it}`` over the package code."""
    found: dict = {}
    for package in CODE_DIRS:
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in ENV_NAME.findall(path.read_text(encoding="utf-8")):
                found.setdefault(name, str(path.relative_to(ROOT)))
    return found


def test_every_archive_variable_in_the_code_is_in_the_registry() -> None:
    registry = {v.name for v in settings.VARIABLES}
    missing = {n: f for n, f in names_in_code().items() if n not in registry}
    assert not missing, f"ARCHIVE_* names the code mentions but indexer.settings.VARIABLES lacks: {missing}"


def test_every_registry_variable_is_read_by_settings() -> None:
    source = (ROOT / "indexer" / "settings.py").read_text(encoding="utf-8")
    read = set(re.findall(r"_(?:int_)?env\(\s*\"(ARCHIVE_\w+)\"", source))
    registry = [v.name for v in settings.VARIABLES]
    assert len(registry) == len(set(registry)), f"names twice in VARIABLES: {registry}"
    assert set(registry) == read, (
        f"VARIABLES lists what settings.py does not read: {sorted(set(registry) - read)}; "
        f"settings.py reads what VARIABLES lacks: {sorted(read - set(registry))}"
    )
    empty = [v.name for v in settings.VARIABLES if not v.meaning.strip() or not v.default.strip()]
    assert not empty, f"variables without a meaning or a default: {empty}"


# -- README ----------------------------------------------------------------------------------------
def test_readme_is_short() -> None:
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines; keep it within {README_MAX_LINES} (the rest: docs/)"
    )


def test_readme_links_point_at_files_that_exist() -> None:
    text = README.read_text(encoding="utf-8")
    local = [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", t)]
    assert any(t.startswith("docs/") for t in local), "README.md links to no docs page"
    missing = [t for t in local if not (ROOT / t.split("#")[0]).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


# -- the Python API page ---------------------------------------------------------------------------
def test_the_python_api_page_calls_methods_that_exist() -> None:
    from archive.api import Archive

    text = (ROOT / "docs" / "python-api.md").read_text(encoding="utf-8")
    calls = set(re.findall(r"\ba\.(\w+)\(", text))
    assert {"index", "search", "label_add"} <= calls, calls
    missing = sorted(c for c in calls if not callable(getattr(Archive, c, None)))
    assert not missing, f"docs/python-api.md calls Archive methods that do not exist: {missing}"
