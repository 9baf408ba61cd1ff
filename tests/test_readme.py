"""README.md documents every command and every option of `mnp`, and no option that does not exist.

The parsers are walked from `mnp.cli.build_parser()` (subcommands and the `local` sub-subcommands),
so a flag added without a line in the README fails CI. Where the README must say it:
- `mnp X`: in the section whose heading names `` `mnp X` `` (its text up to the next heading of the
  same or a higher level);
- `mnp X Y` (e.g. `mnp local delete`): on a line of the `mnp X` section that names `mnp X Y`.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

from mnp.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"

Path_ = tuple[str, ...]


def commands(parser: argparse.ArgumentParser, path: Path_ = ()) -> Iterator[tuple[Path_, argparse.ArgumentParser]]:
    """Every (sub)command below the top level, with its parser: ('agent',), ('local', 'up'), ..."""
    if path:
        yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


def options(parser: argparse.ArgumentParser) -> list[str]:
    """The option strings of a command itself (not -h/--help, not its subcommands')."""
    return [
        s
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
        for s in a.option_strings
    ]


def mentions(text: str, option: str) -> bool:
    """`option` as a whole token: `-p` is not found inside `--previous` or `-pp`."""
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def section(text: str, command: str) -> str | None:
    """The README section whose heading names `mnp COMMAND` in backticks, without its heading line."""
    lines = text.splitlines()
    headings = [(i, line) for i, line in enumerate(lines) if line.startswith("#") and not fenced(lines, i)]
    wanted = re.compile(rf"^(#+) .*`mnp {re.escape(command)}(?![\w-])")
    for n, (i, line) in enumerate(headings):
        m = wanted.match(line)
        if m is None:
            continue
        level = len(m.group(1))
        end = next((j for j, h in headings[n + 1 :] if len(h) - len(h.lstrip("#")) <= level), len(lines))
        return "\n".join(lines[i + 1 : end])
    return None


def fenced(lines: list[str], index: int) -> bool:
    """Whether line `index` is inside a ``` code block (a `# comment` there is no heading)."""
    return sum(1 for line in lines[:index] if line.startswith("```")) % 2 == 1


def usage_lines(text: str, path: Path_) -> str:
    """The lines of a section that name `mnp X Y` (a table row or a synopsis line of that verb)."""
    name = re.compile(rf"mnp {re.escape(' '.join(path))}(?![\w-])")
    return "\n".join(line for line in text.splitlines() if name.search(line))


def synopsis(text: str) -> str:
    """The first fenced code block of a section: the command's synopsis."""
    m = re.search(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M)
    return m.group(1) if m else ""


def verb_synopsis(lines: str, path: Path_) -> str:
    """The code spans of table rows that start with `mnp X Y` (the verb's synopsis cell)."""
    prefix = f"mnp {' '.join(path)}"
    return "\n".join(
        span
        for line in lines.splitlines()
        if line.startswith("|")
        for span in re.findall(r"`([^`]*)`", line)
        if span.startswith(prefix)
    )


def where_documented(readme: str, path: Path_) -> tuple[str, str]:
    """(text the options of `path` must appear in, how to say where that is)."""
    top = section(readme, path[0])
    if top is None:
        return "", f"a README heading naming `mnp {path[0]}`"
    if len(path) == 1:
        return top, f"the README section `mnp {path[0]}`"
    return usage_lines(top, path), f"a line naming `mnp {' '.join(path)}` in the README section `mnp {path[0]}`"


def test_every_command_and_option_of_mnp_is_in_the_readme() -> None:
    readme = README.read_text()
    missing = []
    for path, parser in commands(build_parser()):
        text, where = where_documented(readme, path)
        if not text:
            missing.append(f"mnp {' '.join(path)}: not documented (needs {where})")
            continue
        missing += [f"mnp {' '.join(path)} {o}: not in {where}" for o in options(parser) if not mentions(text, o)]
    assert not missing, "undocumented in README.md:\n" + "\n".join(missing)


def test_the_readme_shows_no_option_a_command_does_not_have() -> None:
    readme = README.read_text()
    wrong = []
    for path, parser in commands(build_parser()):
        if any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
            continue  # `mnp local` itself: its verbs are checked one by one
        text, _ = where_documented(readme, path)
        shown = synopsis(text) if len(path) == 1 else verb_synopsis(text, path)
        real = set(options(parser)) | {"-h", "--help"}
        for token in re.findall(r"(?<![\w-])--?[a-zA-Z][\w-]*", shown):
            if token not in real:
                wrong.append(f"mnp {' '.join(path)}: README shows {token}, which it does not accept")
    assert not wrong, "\n".join(wrong)


def test_the_option_finder_tells_short_options_from_long_ones() -> None:
    assert mentions("mnp local logs NS/POD [-c C] [-p|--previous]", "-p")
    assert not mentions("mnp local logs NS/POD [--previous]", "-p")
    assert not mentions("--accept-icmpv6", "--accept-icmp")
    assert mentions("`--accept-icmp`, `--accept-icmpv6`", "--accept-icmp")


def test_a_section_ends_at_the_next_heading_outside_code_blocks() -> None:
    text = "## `mnp a`\n```sh\n# a comment\nmnp a --x\n```\n### sub\nmore\n## `mnp b`\nother\n"
    assert section(text, "a") == "```sh\n# a comment\nmnp a --x\n```\n### sub\nmore"
    assert section(text, "b") == "other"
    assert section(text, "c") is None


def test_every_command_the_readme_documents_exists() -> None:
    names = {path[0] for path, _ in commands(build_parser())}
    documented = set(re.findall(r"^#+ `mnp ([\w-]+)`", README.read_text(), re.M))
    assert documented <= names, f"README documents commands mnp does not have: {sorted(documented - names)}"
    assert names <= documented, f"commands without a README section: {sorted(names - documented)}"
