"""The gateway's settings as a Markdown table, made from the settings code itself: every field of ProxySettings
and JwtSettings, its environment variable, its default and the comment beside (or just above) it. docs/
configuration.md carries the table; a unit test fails when the two differ.

    .venv/bin/python -m auth_plugin settings          # prints the table
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import tokenize
from pathlib import Path

from auth_plugin import settings as settings_module
from auth_plugin.settings import ROOT, JwtSettings, ProxySettings

BEGIN, END = "<!-- settings table: python -m auth_plugin settings -->", "<!-- end of the settings table -->"


def _comments(source: str) -> tuple[dict[int, str], dict[int, str]]:
    """(line number -> the comment at the end of that line, line number -> a comment that is the whole line)."""
    tokens = [t for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type == tokenize.COMMENT]
    trailing = {t.start[0]: t.string.lstrip("#").strip() for t in tokens}
    whole = {line: text for line, text in trailing.items()
             if next(t for t in tokens if t.start[0] == line).line.lstrip().startswith("#")}
    return trailing, whole


def _meanings(cls: type, source: str, comments: tuple[dict[int, str], dict[int, str]]) -> dict[str, str]:
    """Field -> its trailing comment, else the whole-line comments right above it (never the previous field's)."""
    trailing, whole = comments
    node = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    meanings = {}
    for statement in node.body:
        if not isinstance(statement, ast.AnnAssign) or not isinstance(statement.target, ast.Name):
            continue
        above, line = [], statement.lineno - 1
        while line in whole:
            above.insert(0, whole[line])
            line -= 1
        meanings[statement.target.id] = trailing.get(statement.lineno) or " ".join(above)
    return meanings


def _default(spec: dataclasses.Field) -> str:
    value = spec.default if spec.default is not dataclasses.MISSING else None
    if spec.name == "secret" or value is None:
        return "(unset)"
    if isinstance(value, Path):
        return str(value).replace(str(ROOT), ".") if value.is_relative_to(ROOT) else str(value)
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def rows() -> list[tuple[str, str, str]]:
    source = inspect.getsource(settings_module)
    comments = _comments(source)
    table = []
    for cls, prefix in ((ProxySettings, "PROXY_"), (JwtSettings, "PROXY_JWT_")):
        meanings = _meanings(cls, source, comments)
        for spec in dataclasses.fields(cls):
            if spec.name != "jwt":
                table.append((prefix + spec.name.upper(), _default(spec), meanings.get(spec.name, "")))
    return table


def markdown() -> str:
    lines = [BEGIN, "", "| variable | default | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{name}` | `{default}` | {meaning} |" for name, default, meaning in rows()]
    return "\n".join([*lines, "", END])
