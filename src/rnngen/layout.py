"""Lines of generated code laid out as the formatter lays them out, so generated modules stay formatted.

A network of many layers and directions has many parameters: the lines that pass them all
(unpacking, calls, the dict of gradients) outgrow the line length. These helpers write such a
line the way the project's formatter would: on one line when it fits, else the bracket's
content on one indented line, else one item a line with a trailing comma.
"""

from __future__ import annotations

import textwrap

#: The line length of generated code (the project's formatter's).
LINE = 120


def bracketed(head: str, items: list, tail: str = "", indent: int = 4, brackets: str = "()", collection=False) -> list:
    """``head(item, ...)tail`` as lines (without the indent of the first line).

    A call's arguments that do not fit beside ``head`` go on one indented line if they fit there;
    a collection literal (``collection``: a tuple, a dict) that does not fit has one item a line.
    """
    open_, close = brackets
    inner = ", ".join(items)
    if indent + len(head) + len(inner) + len(tail) + 2 <= LINE:
        return [f"{head}{open_}{inner}{close}{tail}"]
    if not collection and indent + 4 + len(inner) <= LINE:
        return [f"{head}{open_}", f"    {inner}", f"{close}{tail}"]
    return [f"{head}{open_}", *[f"    {item}," for item in items], f"{close}{tail}"]


def slice_code(start: str, stop: str) -> str:
    """``a:b`` as the formatter spaces it: ``n : n + m`` when a bound is an expression, ``n + m :`` for an open end."""
    if any(" " in bound for bound in (start, stop)):
        return f"{start} : {stop}".strip()
    return f"{start}:{stop}"


def unpack(names: list, source: str, groups: list, indent: int = 4) -> list:
    """``a, b, ... = source`` when it fits; else one line per group, ``a, b = source[i:j]``."""
    one = f"{', '.join(names)} = {source}"
    if indent + len(one) <= LINE:
        return [one]
    lines, start = [], 0
    for group in groups:
        stop = start + len(group)
        part = f"{source}[{start}]" if len(group) == 1 else f"{source}[{start}:{stop}]"  # one name: the item
        lines.append(f"{', '.join(group)} = {part}")
        start = stop
    return lines


def chunks(names: list, width: int) -> list:
    """``names`` in runs whose joined text stays within ``width`` characters."""
    out, run = [], []
    for name in names:
        if run and len(", ".join([*run, name])) > width:
            out.append(run)
            run = []
        run.append(name)
    return out + ([run] if run else [])


def comment(text: str, indent: int = 4) -> list:
    """``# text`` in lines within the line length, continued with an indented ``#``."""
    return textwrap.wrap(text, LINE - indent, initial_indent="# ", subsequent_indent="#     ", break_on_hyphens=False)
