"""What `--format` selects, as docker's CLI: `table` (the default columns),
`json` (one JSON object per line), `table TEMPLATE` (a Go template per row
under a header row, columns split on tabs and aligned), or a bare Go template
(one rendering per object). `\\t` and `\\n` in a format are tab and newline.
Pure: strings in, strings out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from clients.gotemplate import TemplateError, compile_template

TABLE = "table"
JSON = "json"
# docker's tabwriter: minimum cell width 10, padding 3.
_MIN_WIDTH = 10
_PADDING = 3


def align(lines: Sequence[Sequence[str]]) -> str:
    """Cells aligned as Go's tabwriter aligns tab-separated cells; a line's last
    cell is never padded."""
    out = []
    widths: dict[int, int] = {}
    for line in lines:
        for i, cell in enumerate(line[:-1]):
            widths[i] = max(widths.get(i, _MIN_WIDTH), len(cell) + _PADDING)
    for line in lines:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(line[:-1])]
        out.append(("".join(cells) + (line[-1] if line else "")).rstrip())
    return "\n".join(out) + "\n"


def is_template(fmt: str) -> bool:
    return fmt not in ("", TABLE, JSON)


def _unescape(fmt: str) -> str:
    return fmt.replace("\\t", "\t").replace("\\n", "\n")


def _header_of(name: str) -> str:
    # "CreatedAt" -> "CREATED AT", as docker's headers read.
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).upper()


class _Headers(dict):
    """The data a `table` template's header row is rendered with: every field
    is its column header."""

    def __init__(self, names: Mapping[str, str]) -> None:
        super().__init__()
        self.names = names

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str)

    def __getitem__(self, key: str) -> str:
        return self.names.get(key) or _header_of(key)


def check(fmt: str) -> None:
    """TemplateError when `fmt` does not parse."""
    compile_template(_unescape(fmt[len(TABLE) :] if fmt.startswith(TABLE + " ") else fmt))


def render(fmt: str, objects: Sequence[Any], headers: Mapping[str, str] | None = None) -> str:
    """`objects` (plain dicts) through the Go template `fmt`, table or not.

    TemplateError for a template that does not parse or does not apply."""
    table = fmt.startswith(TABLE + " ")
    source = _unescape(fmt[len(TABLE) :].strip() if table else fmt)
    template = compile_template(source)
    rows = [template(obj) for obj in objects]
    if not table:
        return "".join(row + "\n" for row in rows)
    header = template(_Headers(headers or {}))
    lines = [line for text in (header, *rows) for line in text.split("\n")]
    return align([line.split("\t") for line in lines])


__all__ = ["JSON", "TABLE", "TemplateError", "align", "check", "is_template", "render"]
