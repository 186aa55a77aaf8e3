"""The derivation document as Markdown, converted from its LaTeX.

The LaTeX document is the one source; this module rewrites the small set of
constructs its template uses (sections, the legend table, numbered lists,
``align``/``equation`` displays, ``\\texttt``, the figure as its SVG) and refuses anything else, so a
template change that Markdown cannot show fails loudly instead of leaking
LaTeX into the page.

Two flavors, because the two renderers split math from Markdown differently:

- ``github``: displays in fenced ```` ```math ```` blocks and inline math as
  ``$`...`$``, which GitHub protects from its Markdown parser (backslashes and
  underscores survive);
- ``jupyter``: ``$$...$$`` and ``$...$``, what notebooks render with MathJax.

MathJax has no ``align`` with per-line numbers, so each numbered line (with
the unnumbered lines before it) becomes one display: an ``aligned`` block
followed by its ``\\tag``.
"""

from __future__ import annotations

import re

FLAVORS = ("github", "jupyter")

#: An equation's number, or a restated equation's (``\tag*{(24)}``, the number it has above).
_TAG = re.compile(r"\\tag(\{\d+\}|\*\{\(\d+\)\})")
_ROW_END = re.compile(r"\\\\\*?\s*$")  # \\* is a row end that forbids a page break after it


class MarkdownError(ValueError):
    """A construct of the LaTeX document that has no Markdown rendering."""


def _inline(text: str, flavor: str) -> str:
    """Paragraph text: inline math in the flavor's delimiters, the few text macros the template uses."""
    parts = re.split(r"(\$[^$]+\$)", text)
    out = []
    for part in parts:
        if part.startswith("$") and part.endswith("$") and len(part) > 1:
            body = part[1:-1]
            out.append(f"$`{body}`$" if flavor == "github" else f"${body}$")
            continue
        part = re.sub(r"\\texttt\{([^}]*)\}", lambda m: "`" + m.group(1).replace(r"\_", "_") + "`", part)
        part = part.replace(r"\noindent", "").replace(r"\medskip", "").replace("~", " ")
        if "\\" in part or "{" in part or "}" in part:
            raise MarkdownError(f"no Markdown rendering for the LaTeX text {part.strip()!r}")
        out.append(part)
    return re.sub(r"  +", " ", "".join(out)).strip()


_ENV_OR_AMP = re.compile(r"\\begin\{[^}]*\}|\\end\{[^}]*\}|\\&|(?:\s*&)+\s*")


def _drop_alignment(row: str) -> str:
    """A display row without its alignment points: every ``&`` outside an inner environment (a matrix's
    column separators stay; ``\\&`` is a literal ampersand), so the row reads as one equation."""
    depth, out, last = 0, [], 0
    for m in _ENV_OR_AMP.finditer(row):
        token = m.group(0)
        if token.startswith("\\begin"):
            depth += 1
        elif token.startswith("\\end"):
            depth -= 1
        elif token != "\\&" and depth == 0:
            out += [row[last : m.start()], " "]
            last = m.end()
    return ("".join(out) + row[last:]).strip()


def _display(body: str, flavor: str) -> list:
    """An ``align`` or ``equation`` body -> Markdown display blocks, one per equation number."""
    rows = [r.strip() for r in re.split(r"\\\\\*?\s*\n", body.strip()) if r.strip()]
    blocks, pending = [], []
    for row in rows:
        row = _ROW_END.sub("", row).replace(r"\nonumber", "").strip()
        tag = _TAG.search(row)
        pending.append(_TAG.sub("", row).strip())
        if tag:
            blocks.append((pending, tag.group(1)))
            pending = []
    if pending:
        blocks.append((pending, None))
    out = []
    for lines, tag in blocks:
        if len(lines) == 1:  # no aligned block: its alignment points go, wherever they stand
            math = _drop_alignment(lines[0])
        else:
            math = "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"
        if tag:
            math += f" \\tag{tag}"
        out += ["```math", math, "```"] if flavor == "github" else ["$$", math, "$$"]
        out.append("")
    return out


def _table(body: str, flavor: str) -> list:
    body = body.replace("\\endhead", "")  # a longtable's header repeats on every page; Markdown has one page
    rows = [r.strip() for r in re.split(r"\\\\\*?", body) if r.strip()]  # \\* is a row LaTeX keeps with the next
    header = ["symbol", "meaning"]  # the legend's; a table with a header row ends it with \hline
    if len(rows) > 1 and rows[1].startswith("\\hline"):
        header = rows.pop(0).split("&")
        rows[0] = rows[0].removeprefix("\\hline").strip()
    out = ["| " + " | ".join(_inline(c.strip(), flavor) for c in header) + " |", "| --- | --- |"]
    for row in rows:
        cells = [_inline(c.strip(), flavor).replace("|", r"\|") for c in row.split("&")]
        out.append("| " + " | ".join(cells) + " |")
    return out + [""]


def _continues(out: list, table: list) -> bool:
    """Whether ``table`` is the second half of the table ``out`` ends with (its heading, nothing between): a
    long table of shapes is set in two halves side by side; Markdown, without pages, keeps it one table."""
    if out[-1:] != [""] or len(out) < 3 or not out[-2].startswith("|"):
        return False
    start = len(out) - 2
    while start > 0 and out[start - 1].startswith("|"):
        start -= 1
    return out[start] == table[0]


def _figure(body: str, number: int, flavor: str, images: dict) -> list:
    """A ``figure`` environment (``figure.tex.jinja``): the SVG named on its ``% Markdown:`` line (or the
    address ``images`` gives for that name), then its caption; the TikZ drawing itself has no Markdown
    rendering, the SVG is the same figure."""
    image = re.search(r"^% Markdown: (\S+)$", body, re.M)
    caption = re.search(r"\\caption\{(.*)\}\s*$", body, re.S)
    if not image or not caption:
        raise MarkdownError("a figure needs a '% Markdown: file.svg' line and a caption")
    text = _inline(" ".join(caption.group(1).split()), flavor)
    address = images.get(image.group(1), image.group(1))
    return [f"![Figure {number}: the unrolled network]({address})", "", f"*Figure {number}.* {text}", ""]


def _header(comments: list) -> list:
    """The LaTeX preamble comments, as an HTML comment that says how to regenerate this file."""
    lines = [c[1:].strip() if c.startswith("%") else c for c in comments]
    lines[0] = "<!-- " + lines[0].replace("Do not edit by hand.", "Markdown rendering; do not edit by hand.")
    lines.append("(add --markdown to write this file)")
    return lines + ["-->", ""]


#: The lines that only place things on the page: a float, a block in groups and its breaks, a box of half the width, the
#: space between two tables side by side, a vertical space.
_PLACEMENT = re.compile(
    r"\\begin\{(table|keepgroups)\}(\[!?\w*\])?|\\end\{(table|keepgroups)\}|(\\groupbreak)?(\\vspace\{[^{}]*\})?\\noindent"
    r"|\\vspace\{[^{}]*\}|\\begin\{minipage\}\[t\]\{0\.5\\linewidth\}|\\end\{minipage\}%?|\\qquad"
)


def to_markdown(tex: str, flavor: str = "github", images: dict | None = None) -> str:
    """The Markdown rendering of a document written by ``derivation.tex.jinja`` or ``network.tex.jinja``;
    ``images`` maps a figure's file name to the address to show it from (a notebook has no file beside it)."""
    if flavor not in FLAVORS:
        raise ValueError(f"flavor must be one of {FLAVORS}, not {flavor!r}")
    head, _, rest = tex.partition("\\begin{document}")
    body, _, _ = rest.partition("\\end{document}")
    preamble = head.partition("\\documentclass")[0]  # the comments that say what the file is
    comments = [line for line in preamble.splitlines() if line.startswith("%")]
    title = re.search(r"\\title\{(.*?)\}\n\\author\{(.*?)\}", head, re.S)
    if not title:
        raise MarkdownError("the LaTeX document has no title")
    out = _header(comments)
    section = figures = 0
    appendix = False  # after \appendix, sections are lettered A, B, ... as LaTeX letters them
    paragraph: list = []

    def flush():
        if paragraph:
            out.extend([_inline(" ".join(paragraph), flavor), ""])
            paragraph.clear()

    lines = body.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        env = re.match(r"\\begin\{(align|equation|tabularx?|longtable|enumerate|figure)\}", line)
        if env:
            flush()
            name = env.group(1)
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == f"\\end{{{name}}}")
            inner = "\n".join(lines[i + 1 : end])
            if name in ("align", "equation"):
                out += _display(inner, flavor)
            elif name == "figure":
                figures += 1
                out += _figure(inner, figures, flavor, images or {})
            elif name.startswith("tabular") or name == "longtable":  # without its placement, width and columns
                head = re.sub(r"^(?:\[\w\]|\{(?:[^{}]|\{[^{}]*\})*\})+", "", line.removeprefix(f"\\begin{{{name}}}"))
                table = _table(head + inner, flavor)
                if _continues(out, table):
                    out[-1:] = table[2:]
                else:
                    out += table
            else:
                items = [s.strip() for s in re.split(r"\\item\b", inner) if s.strip()]
                out += [f"{k}. {_inline(' '.join(item.split()), flavor)}" for k, item in enumerate(items, 1)] + [""]
            i = end + 1
            continue
        heading = re.match(r"\\section(\*?)\{(.*)\}$", line)
        if re.fullmatch(_PLACEMENT, line):  # where LaTeX puts a block: Markdown has no pages
            flush()
        elif line == "\\maketitle":
            flush()
            text = " ".join(title.group(1).replace("\\\\", " ").split())
            out += [f"# {_inline(text, flavor)}", ""]
            if title.group(2).strip():
                out += [f"*{_inline(title.group(2), flavor)}*", ""]
        elif re.fullmatch(r"\\needlines\{\d+\}", line):  # page layout only: Markdown has no pages
            flush()
        elif line == "\\appendix":
            flush()
            section, appendix = 0, True
        elif heading:
            flush()
            number = ""
            if not heading.group(1):
                section += 1
                number = f"{chr(ord('A') + section - 1) if appendix else section} "
            out += [f"## {number}{_inline(heading.group(2), flavor)}", ""]
        elif line:
            paragraph.append(line)
        else:
            flush()
        i += 1
    flush()
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"
