"""Docs are tests: the Python examples in README.md and docs/*.md, and every doctest.

A fenced block whose info string is exactly ``python`` is executed; the blocks of
one file run in order in one shared namespace (a fresh module per file). Fence a
block as ``python-noexec``, ``bash`` or ``text`` to show it without running it.
"""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil
import re
import sys
import traceback
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

import privaudit

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = sorted(
    path.relative_to(ROOT).as_posix()
    for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    if path.is_file()
)

# An opening fence: up to three spaces, then ``` or ~~~ (three or more), then the info string.
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class CodeBlock:
    """One fenced code block: its info string, its first code line (1-based), its code."""

    info: str
    line: int
    source: str


def fenced_blocks(text: str) -> list[CodeBlock]:
    """Return every fenced code block of a Markdown document (CommonMark fences)."""
    blocks: list[CodeBlock] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None or (opening["fence"][0] == "`" and "`" in opening["info"]):
            index += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        body: list[str] = []
        index += 1
        first_line = index + 1
        while index < len(lines) and not closing.match(lines[index]):
            line = lines[index]
            strip = len(line) - len(line.lstrip(" "))
            body.append(line[min(strip, indent) :])
            index += 1
        index += 1  # past the closing fence (or the end of the document)
        source = "\n".join(body) + "\n"
        blocks.append(CodeBlock(info=opening["info"].strip(), line=first_line, source=source))
    return blocks


def test_fenced_blocks_parser() -> None:
    text = "intro\n```python\nx = 1\n```\n\n  ~~~python-noexec\n  y\n  ~~~\n```\nz\n```\n"
    blocks = fenced_blocks(text)
    assert [(block.info, block.line, block.source) for block in blocks] == [
        ("python", 3, "x = 1\n"),
        ("python-noexec", 7, "y\n"),
        ("", 10, "z\n"),
    ]


@pytest.mark.parametrize("relative", DOC_FILES)
def test_markdown_python_blocks(relative: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = ROOT / relative
    blocks = [block for block in fenced_blocks(path.read_text("utf-8")) if block.info == "python"]
    if not blocks:
        return
    name = "privaudit_docs_" + re.sub(r"\W", "_", relative)
    module = types.ModuleType(name)
    module.__file__ = str(path)
    # A real module, so dataclasses, pydantic and pickling can find the namespace.
    monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.chdir(ROOT)  # blocks run where a reader of a checkout runs them
    for block in blocks:
        failure = _run_block(path, block, module.__dict__)
        if failure is not None:
            pytest.fail(
                f"{relative}: the python block at line {block.line} raised:\n{failure}",
                pytrace=False,
            )


def _run_block(path: Path, block: CodeBlock, namespace: dict[str, object]) -> str | None:
    """Run one block in ``namespace``; return the formatted traceback if it raised."""
    # Pad with blank lines so tracebacks show line numbers of the Markdown file.
    padded = "\n" * (block.line - 1) + block.source
    try:
        code = compile(padded, str(path), "exec", dont_inherit=True)
        exec(code, namespace)  # noqa: S102 - running our own docs is the point
    except Exception as error:
        # Drop this function's frame: the traceback starts in the Markdown file.
        tb = error.__traceback__.tb_next if error.__traceback__ else None
        return "".join(traceback.format_exception(type(error), error, tb))
    return None


# Modules that must not be imported to look for doctests: importing them has effects.
_NOT_IMPORTED = {
    "privaudit.__main__": "runs the CLI when imported",
    "privaudit.api.migrations.env": "an Alembic script: it runs migrations when imported",
}


def _package_modules() -> list[str]:
    names = {"privaudit"}
    # walk_packages imports packages (not modules) to recurse; skip any that fail.
    for info in pkgutil.walk_packages(privaudit.__path__, "privaudit.", onerror=lambda _: None):
        names.add(info.name)
    return sorted(names)


@pytest.mark.parametrize("module_name", _package_modules())
def test_module_doctests(module_name: str) -> None:
    if module_name in _NOT_IMPORTED:
        pytest.skip(_NOT_IMPORTED[module_name])
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:  # an optional extra is not installed
        pytest.skip(f"cannot import {module_name}: {error}")
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    report = io.StringIO()
    for test in finder.find(module, module_name):
        runner.run(test, out=report.write)
    if runner.failures:
        pytest.fail(
            f"{runner.failures} of {runner.tries} doctest examples of {module_name} "
            f"failed:\n{report.getvalue()}",
            pytrace=False,
        )
