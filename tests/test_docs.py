"""The README documents the real CLI: every command and option, and no option that is gone.

Like sqlite-utils' docs tests: the commands and options are read from the CLI itself (through
click), the documentation from README.md's "## Use" section, where each command has a heading
``### `archive NAME ...` `` and its own text under it (down to the next ``###``/``##`` heading).
Options every archive command takes (``--store``) may instead be covered once by the general
sentence at the top of the section.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import typer

from archive.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
USE_HEADING = "## Use"
# Options shared by the commands that read or write an archive: documented once, in the sentence
# at the top of "## Use" ("Every command that reads or writes an archive takes `--store DIR` ...").
GENERAL_OPTIONS = ("--store",)
HELP_OPTIONS = {"--help", "-h"}

Path_ = Tuple[str, ...]  # ("label", "add") for `archive label add`
# Click objects, duck-typed: recent typer ships its own copy of click (typer._click), so the
# classes of the `click` package would not match. Groups have `.commands`; options are "option" params.
Command = Any


def is_group(cmd: Command) -> bool:
    return isinstance(getattr(cmd, "commands", None), dict)


def cli_commands(cmd: Optional[Command] = None, path: Path_ = ()) -> Iterator[Tuple[Path_, Command]]:
    """Every command of the real CLI, groups included (the root is ``()``), depth first."""
    if cmd is None:
        cmd = typer.main.get_command(app)
    yield path, cmd
    if is_group(cmd):
        for name, sub in sorted(cmd.commands.items()):
            if not getattr(sub, "hidden", False):
                yield from cli_commands(sub, path + (name,))


def leaf_commands() -> Dict[Path_, Command]:
    return {p: c for p, c in cli_commands() if not is_group(c)}


def option_names(cmd: Command) -> List[str]:
    """The names a user types for each option: its long names (``--fps``); a short one only if it has no long."""
    names: List[str] = []
    for param in cmd.params:
        if param.param_type_name != "option" or getattr(param, "hidden", False):
            continue
        all_names = [*param.opts, *param.secondary_opts]
        longs = [n for n in all_names if n.startswith("--")]
        names += [n for n in (longs or all_names) if n not in HELP_OPTIONS]
    return names


def display(path: Path_) -> str:
    return " ".join(("archive",) + path)


def mentions(text: str, option: str) -> bool:
    """``--ads`` as a whole option name: not the start of ``--ads-size``."""
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def use_section(readme_text: str) -> str:
    """README's "## Use" section, from its heading down to (not including) the next ``##`` heading."""
    lines = readme_text.splitlines()
    try:
        start = lines.index(USE_HEADING)
    except ValueError:
        raise AssertionError(f"README has no {USE_HEADING!r} section") from None
    out = [lines[start]]
    fenced = False
    for line in lines[start + 1:]:
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"##\s", line):
            break
        out.append(line)
    return "\n".join(out)


def split_parts(section: str) -> Tuple[str, List[Tuple[str, str]]]:
    """The text before the first ``###`` heading, and ``(heading, body)`` for each ``###`` heading.

    A part runs to the next ``###`` (or ``##``) heading; ``####`` subheadings stay in their part.
    """
    intro: List[str] = []
    parts: List[Tuple[str, List[str]]] = []
    fenced = False
    for line in section.splitlines()[1:]:
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"###\s", line):
            parts.append((line, []))
        elif parts:
            parts[-1][1].append(line)
        else:
            intro.append(line)
    return "\n".join(intro), [(h, "\n".join(b)) for h, b in parts]


def heading_commands(heading: str, known: Dict[Path_, Command]) -> List[Tuple[str, Optional[Path_], str]]:
    """``(what it says, command path or None if no such command, code span)`` per `archive ...` span in a heading."""
    found = []
    for span in re.findall(r"`(archive\b[^`]*)`", heading):
        words = span.split()[1:]
        path = max((p for p in known if tuple(words[: len(p)]) == p), key=len, default=None)
        found.append((" ".join(span.split()[:3]), path, span))
    return found


def readme_problems(readme: Path = README) -> List[str]:
    """Everything wrong between the CLI and ``readme``'s "## Use" section, one line per problem."""
    commands = leaf_commands()
    intro, parts = split_parts(use_section(readme.read_text(encoding="utf-8")))
    problems: List[str] = []

    # Which part documents which command; and the reverse check on the headings.
    text_of: Dict[Path_, List[str]] = {}
    for heading, body in parts:
        for said, path, span in heading_commands(heading, commands):
            if path is None:
                problems.append(f"README heading {heading!r}: no command `{said}` in the CLI (stale docs?)")
                continue
            text_of.setdefault(path, []).append(heading + "\n" + body)
            valid = set(option_names(commands[path])) | HELP_OPTIONS
            for opt in re.findall(r"(?<![\w-])--[A-Za-z0-9][\w-]*", span):
                if opt not in valid:
                    problems.append(f"README heading for `{display(path)}` lists {opt}, "
                                    f"which `{display(path)}` does not have (stale docs?)")

    for opt in GENERAL_OPTIONS:
        if not mentions(intro, opt):
            problems.append(f"{opt}: not in the general sentence at the top of {USE_HEADING!r}")

    for path, cmd in commands.items():
        name = display(path)
        if path not in text_of:
            problems.append(f"`{name}`: undocumented (no ### `{name} ...` heading in {USE_HEADING!r})")
            continue
        own = "\n".join(text_of[path])
        for opt in option_names(cmd):
            if mentions(own, opt) or (opt in GENERAL_OPTIONS and mentions(intro, opt)):
                continue
            problems.append(f"`{name} {opt}`: undocumented (not in the README part for `{name}`)")
    return problems


def test_every_command_and_option_is_documented() -> None:
    problems = readme_problems()
    assert not problems, "README.md's ## Use section is out of step with the CLI:\n  " + "\n  ".join(problems)


def test_every_command_has_help_text() -> None:
    missing = [display(p) for p, c in cli_commands() if not (c.help or "").strip()]
    assert not missing, f"commands without help text: {missing}"


def test_cli_has_the_commands_we_expect_to_walk() -> None:
    """Guard the walker itself: sub-groups are recursed into, options are found."""
    commands = leaf_commands()
    assert ("index",) in commands and ("label", "add",) in commands and ("label", "remove") in commands
    assert {"--fps", "--json", "--store", "--quiet"} <= set(option_names(commands[("index",)]))
    for opt in GENERAL_OPTIONS:
        assert any(opt in option_names(c) for c in commands.values()), f"{opt}: no command has it any more"


def _scratch(tmp_path: Path, old: str, new: str) -> Path:
    text = README.read_text(encoding="utf-8")
    use = use_section(text)
    assert old in use, f"{old!r} not in README's Use section"
    scratch = tmp_path / "README.md"
    scratch.write_text(text.replace(use, use.replace(old, new)), encoding="utf-8")
    return scratch


def test_a_missing_option_is_reported(tmp_path: Path) -> None:
    scratch = _scratch(tmp_path, "--batch-size", "--batch")
    problems = readme_problems(scratch)
    assert any(p.startswith("`archive index --batch-size`: undocumented") for p in problems), problems
    assert any("`archive index` lists --batch," in p for p in problems), problems


def test_a_missing_command_is_reported(tmp_path: Path) -> None:
    scratch = _scratch(tmp_path, "### `archive info", "### `archive information")
    problems = readme_problems(scratch)
    assert any(p.startswith("`archive info`: undocumented") for p in problems), problems


def test_importing_the_cli_does_not_import_torch() -> None:
    code = "import sys, archive.cli; bad = {'torch', 'open_clip'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=README.parent)
