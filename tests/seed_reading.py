"""A reading key for the seed presets' documents: each seed's spelling back into rnngen's own.

Written by hand from the seeds (not from ``presets.py``), as a reader of the seed would translate,
so that ``latex_reader`` evaluates every equation of a preset's document in its spelling:
``as_rnngen(name, tex)`` rewrites the symbols and drops the seed's own section, whose formulas
``seed_notes`` evaluates (``test_presets.py``).
"""

import re

SEED_SECTION = re.compile(r"\\section\{The seed's own formulas\}.*?(?=\\section\{)", re.S)
#: A letter standing as a symbol: not part of a word or a command.
_ALONE = r"(?<![\\A-Za-z])"
_END = r"(?![A-Za-z])"


def _swap(tex: str, letters: dict) -> str:
    """Replace each symbol letter of ``letters`` at once (seed 000 swaps y and yhat)."""
    accented = [k for k in letters if k.startswith("\\")]
    plain = [k for k in letters if not k.startswith("\\")]
    parts = [re.escape(k) for k in accented]
    if plain:
        parts.append(_ALONE + "[" + "".join(plain) + "]" + _END)
    return re.sub("|".join(parts), lambda m: letters[m.group(0)], tex)


def _loss(tex: str, letter: str) -> str:
    return re.sub(_ALONE + re.escape(letter) + _END, "E", tex)


def _last_step(tex: str, letters: tuple) -> str:
    """The step ``T`` on what a many-to-one seed writes as the one of its kind (seed 003's ``\\hat{y}``,
    ``y``, ``o``): a value, its entry ``i`` or ``j``, its delta."""
    alone = "|".join(re.escape(k) if k.startswith("\\") else r"(?<!\\hat\{)" + _ALONE + k + _END for k in letters)
    tex = re.sub(rf"(\\delta\^\{{(?:{alone})\}})(?![_{{])", r"\1_{T}", tex)
    entry = r"_(?:\{([ij])\}|([ij])(?![A-Za-z]))"
    tex = re.sub(
        rf"(?<!\\delta\^\{{)({alone}){entry}", lambda m: m.group(1) + "_{T," + (m.group(2) or m.group(3)) + "}", tex
    )
    return re.sub(rf"(?<!\\delta\^\{{)({alone})(?![_A-Za-z])", r"\1_{T}", tex)


def _seed000(tex):
    swap = {r"\hat{y}": "y", r"\hat{Y}": "Y", "y": r"\hat{y}", "Y": r"\hat{Y}", "z": "o", "Z": "O", "a": "z", "A": "Z"}
    return _swap(tex, swap)


def _seed002(tex):
    return _swap(tex, {"z": "o", "Z": "O", "a": "z", "A": "Z"})


def _seed003(tex):
    tex = _last_step(tex, (r"\hat{y}", "y", "o"))
    tex = re.sub(_ALONE + r"H(?=_\{[^}:]*\})", "h", tex)  # H_t is the state; H_{1:T} stays its steps stacked
    tex = re.sub(_ALONE + r"H(?=\^\{\(?\\?[^}]*\}?_\{[^}:]*\})", "h", tex)
    tex = tex.replace("{g'}", "{f'}").replace("{G'}", "{F'}")
    tex = re.sub(_ALONE + r"g\(", r"\\tanh(", tex)  # the slides' g is tanh here
    tex = re.sub(r"(\\(?:tilde\{\\delta\}|delta))\^\{H\}", r"\1^{h}", tex)  # a delta of the state
    return _loss(tex, "L")


#: Seed 004's letters (row notation, the step below) and rnngen's.
_LETTERS_004 = {"O": "h", "s": "o", "S": "O", "x": "x", "X": "X", "y": "y", "Y": "Y", "z": "z", "Z": "Z"}
_ACCENTED_004 = (r"\hat{y}", r"\hat{Y}", r"\tilde{z}", r"\tilde{Z}", "{f'}", "{F'}")


def _seed004(tex):
    tex = _last_step(tex, (r"\hat{y}", "y", "s"))

    def step(m):
        letter, index, top = m.group("letter"), m.group("index"), m.group("top")
        if letter in _LETTERS_004:
            letter = _LETTERS_004[letter]
        if letter == "h" and ":" in index:
            letter = "H"
        if "," in index and index.split(",")[-1] in ("i", "j"):  # an entry: y_{3,i} is y^{3}_{i}
            index, entry = index.rsplit(",", 1)
            return f"{letter}^{{{index}}}_{{{entry}}}" + (top or "")
        symbol = f"{letter}^{{{index}}}"
        return f"{{{symbol}}}{top}" if top else symbol

    accented = "|".join(re.escape(a) for a in _ACCENTED_004)
    tex = re.sub(
        rf"(?P<letter>{accented}|{_ALONE}[OsSxXyYzZD])_\{{(?P<index>[^{{}}]*)\}}(?P<top>\^\{{\\top\}})?", step, tex
    )
    # a delta: \delta^{z}_{t} is \delta^{z,t} in row notation, its letter the state's
    tex = re.sub(
        r"\\(tilde\{\\delta\}|delta|Delta|tilde\{\\Delta\})\^\{(?P<l>[^{}]*)\}_\{(?P<i>[^{}]*)\}",
        lambda m: "\\" + m.group(1) + "^{" + _LETTERS_004.get(m.group("l"), m.group("l")) + "," + m.group("i") + "}",
        tex,
    )
    tex = re.sub(_ALONE + r"L_\{(?P<index>[^{}]*)\}", r"E^{\g<index>}", tex)  # a loss term, in row notation
    tex = re.sub(_ALONE + r"s_(?=[ij]" + _END + ")", "o_", tex)  # an entry of the output's pre-activation
    return _loss(tex, "L")


#: Seed 001's layer notation: (letter, layer) -> rnngen's letter, for a step and for the steps stacked.
_LAYERS_001 = {("h", "0"): "x", ("z", "1"): "z", ("h", "1"): "h", ("z", "2"): "o", ("h", "2"): r"\hat{y}"}
_STACKED_001 = {("H", "0"): "X", ("Z", "1"): "Z", ("H", "1"): "H", ("Z", "2"): "O", ("H", "2"): r"\hat{Y}"}
_PARAMS_001 = {"W^{0}": "W0", "W^{11}": "W11", "W^{1}": "W1", "b^{0}": "b", "b^{1}": "c"}  # the code names


def _seed001(tex):
    def symbol(m):
        letter, layer, index = m.group("letter"), m.group("layer"), m.group("index")
        table = _STACKED_001 if letter.isupper() else _LAYERS_001
        return f"{table[(letter, layer)]}_{{{index}}}"

    def nabla(m):
        tilde, letter, layer, index = m.group("tilde") != "nabla", m.group("letter"), m.group("layer"), m.group("index")
        name = _LAYERS_001[(letter.lower(), layer)]
        delta = ("\\Delta" if letter.isupper() else "\\delta") if not tilde else "\\tilde{\\delta}"
        return f"{delta}^{{{name}}}_{{{index}}}"

    tex = re.sub(
        r"\\(?P<tilde>tilde\{\\nabla\}|nabla)_\{(?P<letter>[hzHZ])\^\{(?P<layer>\d),(?P<index>[^{}]*)\}\}"
        r" \\mathcal\{L\}",
        nabla,
        tex,
    )
    # a transposed step: {h^{1,t-1}}^{\top} is h_{t-1}^{\top}; a transposed parameter {W^{1}}^{\top} is V^{\top}
    tex = re.sub(r"\{([hzHZ]\^\{\d,[^{}]*\})\}\^\{\\top\}", r"\1^{\\top}", tex)
    tex = re.sub(r"\{(W\^\{(?:0|11|1)\}|b\^\{[01]\})\}\^\{\\top\}", lambda m: _PARAMS_001[m.group(1)] + "^{\\top}", tex)
    # an entry of a step: h^{2,t}_{i} is \hat{y}_{t,i}
    tex = re.sub(
        r"(?P<letter>[hz])\^\{(?P<layer>\d),(?P<index>[^{}]*)\}_\{(?P<i>[ij])\}",
        lambda m: (
            _LAYERS_001[(m.group("letter"), m.group("layer"))] + "_{" + m.group("index") + "," + m.group("i") + "}"
        ),
        tex,
    )
    tex = re.sub(r"\\mathbf\{t\}\^\{(?P<index>[^{}]*)\}_\{(?P<i>[ij])\}", r"y_{\g<index>,\g<i>}", tex)
    tex = re.sub(r"\\tilde\{(?P<letter>[zZ])\}\^\{1,(?P<index>[^{}]*)\}", r"\\tilde{\g<letter>}_{\g<index>}", tex)
    tex = re.sub(r"(?P<letter>[hzHZ])\^\{(?P<layer>\d),(?P<index>[^{}]*)\}", symbol, tex)
    tex = re.sub(r"\\mathbf\{t\}\^\{(?P<index>[^{}]*)\}", r"y_{\g<index>}", tex)
    tex = re.sub(r"\{f'\}\^\{1,(?P<index>[^{}]*)\}", r"{f'}_{\g<index>}", tex)
    tex = re.sub(r"\{F'\}\^\{1,(?P<index>[^{}]*)\}", r"{F'}_{\g<index>}", tex)
    tex = re.sub(r"D\^\{(?P<index>[^{}]*)\}", r"D_{\g<index>}", tex)
    for seed, own in sorted(_PARAMS_001.items(), key=lambda kv: -len(kv[0])):  # W^{11} before W^{1}
        tex = re.sub(re.escape(seed) + r"(?![0-9])", lambda m, own=own: own, tex)
    # an entry: h^{2}_i is \hat{y}_i, z^{2}_j is o_j, \mathbf{t}_i is y_i
    tex = re.sub(r"h\^\{2\}_(?=[ij])", r"\\hat{y}_", tex)
    tex = re.sub(r"z\^\{2\}_(?=[ij])", "o_", tex)
    tex = tex.replace(r"\mathbf{t}_", "y_")
    tex = re.sub(r"\\mathcal\{L\}\^\{(?P<index>[^{}]*)\}", r"E_{\g<index>}", tex)  # a loss term
    return tex.replace(r"\mathcal{L}", "E")


_KEYS = {"seed-000": _seed000, "seed-001": _seed001, "seed-002": _seed002, "seed-003": _seed003}
_KEYS["seed-004"] = _seed004


def as_rnngen(preset: str, tex: str) -> str:
    """The document of ``preset`` in rnngen's own spelling, without the seed's section."""
    head, _, body = tex.partition(r"\begin{document}")
    return head + r"\begin{document}" + _KEYS[preset](SEED_SECTION.sub("", body))
