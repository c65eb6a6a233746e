"""The README's configuration table names every environment variable the code
reads, and nothing it does not: the code (outbound/, config/) is scanned for
reads (os.environ.get / [] / setdefault / `in`, os.getenv, and calls of a
helper that passes its argument to one of those, such as settings' _bool)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "outbound", ROOT / "config"]


def _is_environ(node: ast.expr) -> bool:
    """`os.environ` or a bare `environ`."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def _reader_call(call: ast.Call) -> bool:
    """os.environ.get(...), os.environ.setdefault(...) or os.getenv(...)."""
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr in {"get", "setdefault"}:
        return _is_environ(func.value)
    return (isinstance(func, ast.Attribute) and func.attr == "getenv") or (
        isinstance(func, ast.Name) and func.id == "getenv"
    )


def _first_literal(call: ast.Call) -> str | None:
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def _wrappers(tree: ast.Module) -> set[str]:
    """Functions of the module that read the variable named by their first parameter."""
    found = set()
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef) or not fn.args.args:
            continue
        param = fn.args.args[0].arg
        for node in ast.walk(fn):
            if (
                isinstance(node, ast.Call)
                and _reader_call(node)
                and node.args
                and isinstance(node.args[0], ast.Name)
                and node.args[0].id == param
            ):
                found.add(fn.name)
    return found


def read_in(source: str) -> set[str]:
    """Names of the environment variables this Python source reads."""
    tree = ast.parse(source)
    wrappers = _wrappers(tree)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            is_wrapper = isinstance(node.func, ast.Name) and node.func.id in wrappers
            if (_reader_call(node) or is_wrapper) and (name := _first_literal(node)):
                names.add(name)
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            key = node.slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                names.add(key.value)
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            left = node.left
            names |= (
                {left.value}
                if isinstance(left, ast.Constant) and isinstance(left.value, str)
                else set()
            )
    return names


def read_by_the_code() -> dict[str, list[str]]:
    """Each variable read, with the files that read it."""
    where: dict[str, list[str]] = {}
    for folder in SOURCES:
        for path in sorted(folder.rglob("*.py")):
            for name in read_in(path.read_text()):
                where.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return where


def in_the_table() -> set[str]:
    """The first column of the README's configuration table."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {m.group(1) for row in rows if (m := re.match(r"\| `([A-Z][A-Z0-9_]*)` \|", row))}


def test_the_scanner_finds_each_way_of_reading_the_environment() -> None:
    source = """
import os
from os import environ, getenv

def _bool(name, default):
    value = os.environ.get(name)
    return value

A = os.environ.get("A_GET", "x")
B = os.environ["B_ITEM"]
C = os.getenv("C_GETENV")
D = getenv("D_BARE")
E = _bool("E_WRAPPED", False)
F = "F_IN" in os.environ
os.environ.setdefault("G_SETDEFAULT", "y")
H = environ.get("H_BARE_ENVIRON")
NOT_READ = {"I_NOT_READ": 1}.get("I_NOT_READ")
"""
    assert read_in(source) == {
        "A_GET",
        "B_ITEM",
        "C_GETENV",
        "D_BARE",
        "E_WRAPPED",
        "F_IN",
        "G_SETDEFAULT",
        "H_BARE_ENVIRON",
    }


def test_every_variable_the_code_reads_is_in_the_readme_table_and_only_those() -> None:
    read = read_by_the_code()
    table = in_the_table()
    missing = {name: files for name, files in read.items() if name not in table}
    assert not missing, f"read by the code but not in the README's configuration table: {missing}"
    stale = table - set(read)
    assert not stale, f"in the README's configuration table but read nowhere: {sorted(stale)}"
