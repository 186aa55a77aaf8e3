"""The ``rnngen`` command line.

Every user mistake ends as one line on stderr (``rnngen: error: ...``) and a
non-zero exit status, never a traceback, and never a half-written file.
"""

from __future__ import annotations

import time

_STARTED = time.perf_counter()  # before the heavy imports: "Done in" includes start-up

import dataclasses
import functools
import json
import signal
import sys
import textwrap
from pathlib import Path

import click
import numpy as np
from click.core import ParameterSource

from rnngen import __version__, expression, install_hint, names
from rnngen.activations import DEFAULT_SLOPE, FUSED, HIDDEN, LOSSES, OUTPUT_LAYERS, elementwise, pairs
from rnngen.api import BPTT, CheckFailed, derive_spec
from rnngen.bench.run import CONTENDERS, BenchError, kernels, table
from rnngen.bench.run import bench as run_bench
from rnngen.cells import CELLS, cell_of
from rnngen.emit import OutputError, check_targets, write_all
from rnngen.families import AGE
from rnngen.jsonable import plain
from rnngen.pipeline import build
from rnngen.presets import FIXED, PRESETS, SPEC_FIELDS, preset_spec
from rnngen.program import family_of
from rnngen.spec import (
    DEFAULT_NAMES,
    MAPPINGS,
    MAX_LAYERS,
    MAX_T,
    NOTATIONS,
    RNNSpec,
    SpecError,
    check_T,
    truncation_rule,
)
from rnngen.variants import ROUNDING_FACTOR
from rnngen.verify import (
    CHECK_SIZES,
    EXACT_TOLERANCE,
    FD_TOLERANCE,
    FORMS_TOLERANCE,
    Report,
    VerificationError,
    check_build,
    check_module,
    load_module,
)


class UnrollLength(click.ParamType):
    """``--T``: a whole number in 1..MAX_T, checked by the spec's own rule."""

    name = "T"

    def convert(self, value, param, ctx):
        try:
            return check_T(value)
        except SpecError as e:
            self.fail(str(e), param, ctx)


class Horizon(click.ParamType):
    """``--truncate``: a whole number, handed to the spec, which knows its range (it depends on T and the
    layers) and says it; text that is no whole number goes there as it is, for the same message."""

    name = "TAU"

    def convert(self, value, param, ctx):
        try:
            return int(str(value).strip())
        except ValueError:
            return value


class HiddenActivation(click.ParamType):
    """``--hidden``: a name from ``HIDDEN`` (offered by shell completion) or an expression in x.

    Not a ``click.Choice``, because an expression is allowed too; the spec checks either.
    """

    name = "ACTIVATION"

    def shell_complete(self, ctx, param, incomplete):
        from click.shell_completion import CompletionItem

        return [CompletionItem(n) for n in HIDDEN if n.startswith(incomplete)]


# Subcommands inherit the group's context settings: -h works everywhere.
@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True)
@click.version_option(__version__, prog_name="rnngen")
@click.pass_context
def cli(ctx):
    """rnngen: backpropagation through time, derived symbolically, emitted as NumPy and LaTeX, verified.

    Start with: rnngen derive --T 5
    """
    if ctx.invoked_subcommand is None:  # `rnngen` alone: the help, and success
        click.echo(ctx.get_help())


QUIET, NORMAL, VERBOSE = 0, 1, 2


class Output:
    """Where a command's results go: text on stdout at a verbosity, or one JSON document.

    Progress goes to stderr, never stdout, so ``--json`` output is a document alone. It is
    shown with -v, or when stderr is a terminal (as git does), never with -q or --json.
    """

    def __init__(self, as_json: bool = False, verbosity: int = NORMAL):
        self.json = as_json
        self.verbosity = verbosity
        self.show_progress = not as_json and (verbosity >= VERBOSE or verbosity == NORMAL and sys.stderr.isatty())

    @property
    def text(self) -> bool:
        """True when the full text output is wanted (not -q, not --json)."""
        return not self.json and self.verbosity >= NORMAL

    def echo(self, text: str = "", level: int = NORMAL) -> None:
        """A line of the text output, shown from verbosity ``level`` on (QUIET: shown even with -q)."""
        if not self.json and self.verbosity >= level:
            click.echo(text)

    def progress(self, text: str) -> None:
        """A line on stderr saying what a slow command is doing now."""
        if self.show_progress:
            elapsed = f"  [{time.perf_counter() - _STARTED:.1f} s]" if self.verbosity >= VERBOSE else ""
            click.echo(f"rnngen: {text} ...{elapsed}", err=True)

    def document(self, data: dict) -> None:
        """The ``--json`` output: one JSON document on stdout (nothing else is printed there)."""
        if self.json:
            click.echo(json.dumps(plain({"rnngen": __version__, **data}), indent=2))

    def done(self) -> None:
        self.echo(f"Done in {time.perf_counter() - _STARTED:.2f} s (wall time of the whole command).")


#: The options ``output_options`` adds: how a command prints, not what it computes.
_OUTPUT_OPTIONS = (
    click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print the results as one JSON document on stdout (keys: see the command's help). Example: --json",
    ),
    click.option("-q", "--quiet", is_flag=True, help="Print only the results, no summary or progress. Example: -q"),
    click.option(
        "-v",
        "--verbose",
        is_flag=True,
        help="Also print progress with elapsed times on stderr (shown anyway on a terminal). Example: -v",
    ),
)
OUTPUT_PARAMS = ("as_json", "quiet", "verbose")


def output_options(command):
    """--json, -q and -v, shared by every command that prints results; the command gets ``ui``, an ``Output``."""

    @functools.wraps(command)
    def run(*args, as_json, quiet, verbose, **kwargs):
        if quiet and verbose:
            raise click.UsageError("-q and -v contradict each other; give one")
        verbosity = QUIET if quiet else VERBOSE if verbose else NORMAL
        return command(*args, ui=Output(as_json, verbosity), **kwargs)

    for option in reversed(_OUTPUT_OPTIONS):  # the last applied is listed first
        run = option(run)
    return run


_SPEC_OPTIONS = (
    click.option("--T", "T", type=UnrollLength(), required=True, help=f"Unroll length, 1 to {MAX_T}. Example: --T 5"),
    click.option(
        "--hidden",
        type=HiddenActivation(),
        default="tanh",
        show_default=True,
        help=f"Hidden activation: {', '.join(HIDDEN)}, or an expression in x. Example: --hidden 'x/(1+abs(x))'",
    ),
    click.option(
        "--slope",
        type=float,
        default=None,
        help=f"Negative-side slope of leaky_relu, between 0 and 1 [default: {DEFAULT_SLOPE}]. Example: --slope 0.1",
    ),
    click.option(
        "--output",
        type=click.Choice(list(OUTPUT_LAYERS)),
        default="softmax",
        show_default=True,
        help="Output layer. Example: --output sigmoid",
    ),
    click.option(
        "--loss",
        type=click.Choice(list(LOSSES)),
        default="cross_entropy",
        show_default=True,
        help="Loss (the output must be able to feed it). Example: --loss binary_cross_entropy",
    ),
    click.option(
        "--mapping",
        type=click.Choice(list(MAPPINGS)),
        default="many-to-many",
        show_default=True,
        help="Where the inputs and the losses are: every step; the last loss only; one input at the first "
        "step (seed 001's mappings). Example: --mapping many-to-one",
    ),
    click.option(
        "--delay",
        type=int,
        default=0,
        show_default=True,
        help="With many-to-many, the losses start at step d + 1 (delayed many-to-many, seed 001); the targets "
        "cover steps d + 1..T. Example: --delay 2",
    ),
    click.option(
        "--truncate",
        type=Horizon(),
        default=None,
        help=f"Truncated BPTT (seed 002's fixed horizon): {truncation_rule('TAU')}. From 1 to T, where nothing "
        "is cut (L (T - 1) + 1 for L bidirectional layers). Example: --truncate 3",
    ),
    click.option(
        "--mask",
        "masked",
        is_flag=True,
        help="Take a (T, B) mask or the lengths of real steps: a padded step keeps the state and has no "
        "loss (seed 003). Example: --mask",
    ),
    click.option(
        "--padding",
        type=click.Choice(["post", "pre"]),
        default="post",
        show_default=True,
        help="With --mask, where lengths put the padded steps: after each sequence or before it. "
        "Example: --padding pre",
    ),
    click.option(
        "--notation",
        type=click.Choice(list(NOTATIONS)),
        default="column",
        show_default=True,
        help="column (h_t = f(U x_t + W h_{t-1} + b)), row (h^t = f(x^t U + h^{t-1} W + b)) or stacked "
        "(h_t = f(W [h_{t-1}; x_t] + b), seed 002). Example: --notation row",
    ),
    click.option(
        "--names",
        default=",".join(DEFAULT_NAMES),
        show_default=True,
        help="Names of the input, recurrent and output matrices. Example: --names W,U,V",
    ),
    click.option(
        "--hidden-bias/--no-hidden-bias",
        default=True,
        show_default=True,
        help="Whether the hidden layer has a bias b. Example: --no-hidden-bias",
    ),
    click.option(
        "--output-bias/--no-output-bias",
        default=True,
        show_default=True,
        help="Whether the output layer has a bias c. Example: --no-output-bias",
    ),
    click.option(
        "--cell",
        type=click.Choice(list(CELLS)),
        default="elman",
        show_default=True,
        help=(
            "The recurrent cell of every layer: elman; lstm (gates i, f, g, o in PyTorch's order) or gru "
            "(r, z, n). The gates are sigmoid; --hidden is the candidate's activation (and the LSTM's cell "
            "output's: h = o * f(c)), as Keras's activation beside its sigmoid recurrent_activation. "
            "Example: --cell lstm"
        ),
    ),
    click.option(
        "--gru-reset",
        type=click.Choice(["after", "before"]),
        default=None,
        help=(
            "With --cell gru: where the reset gate acts. after (the default; PyTorch, cuDNN): "
            "n = f(U_n x + b_n + r * (W_n h + b_hn)); before: n = f(U_n x + W_n (r * h) + b_n). "
            "Example: --gru-reset before"
        ),
    ),
    click.option(
        "--layers",
        type=click.IntRange(1, MAX_LAYERS),
        default=1,
        show_default=True,
        help=f"Stacked layers, 1 to {MAX_LAYERS}: layer l reads layer l-1's states. Example: --layers 2",
    ),
    click.option(
        "--bidirectional",
        is_flag=True,
        help="A backward chain beside the forward one in every layer, read side by side. Example: --bidirectional",
    ),
    click.option(
        "--input-grad",
        is_flag=True,
        help='Also return dE/dx (grads["x"]), for a layer under the network. Example: --input-grad',
    ),
)


def spec_options(command):
    """The options that choose the network, shared by derive, latex, flow and bench."""
    for option in reversed(_SPEC_OPTIONS):
        command = option(command)
    return command


#: The largest layer size or batch the commands accept: far above what NumPy runs here in
#: reasonable time, low enough that a slip (--n-h 100000) is refused before it allocates gigabytes.
MAX_SIZE = 4096


def size_options(n_x, n_h, n_y, source=""):
    """--n-x, --n-h and --n-y with these defaults, one rule for every command; ``source`` says
    where the sizes come from instead, when somewhere else may give them."""
    sizes = (("--n-x", "n_x", "Input", n_x), ("--n-h", "n_h", "Hidden", n_h), ("--n-y", "n_y", "Output", n_y))

    def decorate(command):
        for flag, name, what, default in reversed(sizes):
            command = click.option(
                flag,
                name,
                type=click.IntRange(1, MAX_SIZE),
                default=default,
                show_default=True,
                help=f"{what} size{source}. Example: {flag} {2 * default}",
            )(command)
        return command

    return decorate


def _optional_T(command):
    """``spec_options`` with --T optional (bench reads it from a module when one is given)."""
    for param in command.params:
        if param.name == "T":
            param.required = False
            param.help += " (read from MODULE when one is given)"
    return command


def preset_option(command: click.Command) -> click.Command:
    """--preset, one definition for every command that takes it (derive, latex): it goes after the network's
    options, which it fixes, and makes --T optional (the seed's T is the default)."""
    preset = click.Option(
        ["--preset"],
        default=None,
        metavar="NAME",
        help=f"A seed's network in the seed's own notation ({', '.join(PRESETS)}); it fixes every option above "
        "but --T, which overrides the seed's T. Example: --preset seed-004",
    )
    last = max(i for i, param in enumerate(command.params) if param.name in SPEC_FIELDS)
    command.params.insert(last + 1, preset)
    for param in command.params:
        if param.name == "T":
            param.required = False
            param.help += " (a --preset gives its seed's)"
    return command


#: --handout, one definition for derive (which writes it beside the full documents) and latex (which prints it).
handout_option = click.option(
    "--handout",
    is_flag=True,
    help="The document as a handout for students: no appendix on the code, and no word on it (derive writes it"
    " as NAME_handout.tex (.md, .pdf) beside the full documents; latex prints it alone). Example: --handout",
)


def _flag(field: str) -> str:
    """How the command line writes the option of a spec field: ``--mapping``, ``--mask``,
    ``--hidden-bias/--no-hidden-bias``."""
    param = next(p for p in click.get_current_context().command.params if p.name == field)
    return "/".join(param.opts + param.secondary_opts)


def _spec(T, choices: dict, preset: str | None = None) -> RNNSpec:
    """The network of a command's options: a --preset's, or the one the options choose.

    With a preset, every network option given on the command line is refused (presets.preset_spec's rule),
    even one given at its default value: a preset fixes them, so one given is a mistake, not a no-op.
    """
    ctx = click.get_current_context()
    try:
        if preset is not None:
            given = [f for f in choices if ctx.get_parameter_source(f) != ParameterSource.DEFAULT]
            return preset_spec(preset, T, given, spell=_flag)
        if T is None:
            raise click.UsageError("Missing option '--T' (or give a --preset, which has its seed's T).")
        return RNNSpec(T=T, **choices)
    except SpecError as e:
        raise click.UsageError(str(e)) from None


@preset_option
@cli.command()
@spec_options
@click.option(
    "--out",
    default="generated",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the generated files. Example: --out build/rnn",
)
@click.option(
    "--check/--no-check",
    default=True,
    show_default=True,
    help="Verify the module's gradients before writing it. Example: --no-check",
)
@click.option(
    "--exact", is_flag=True, help="Also compare with the exact SymPy scalar oracle (T <= 8, slower). Example: --exact"
)
@click.option(
    "--latex/--no-latex", default=True, show_default=True, help="Also write the LaTeX document. Example: --no-latex"
)
@click.option(
    "--markdown", is_flag=True, help="Also write the document as Markdown (math renders on GitHub). Example: --markdown"
)
@click.option("--pdf", is_flag=True, help="Also compile the document to PDF with pdflatex. Example: --pdf")
@handout_option
@click.option("--force", is_flag=True, help="Overwrite files that rnngen did not generate. Example: --force")
@output_options
def derive(ui, **options):
    """Derive BPTT for an RNN unrolled for T steps; write and verify the NumPy module and LaTeX.

    \b
    Examples:
      rnngen derive --T 5                  writes generated/rnn_tanh_softmax_xent_t5.{py,tex}
      rnngen derive --T 20 --out build     writes into build/
      rnngen derive --T 3 --hidden relu --output identity --loss squared_error --mapping many-to-one
      rnngen derive --T 5 --notation row --names W,U,V --no-hidden-bias --no-output-bias   (seed 000)
      rnngen derive --T 5 --layers 2 --bidirectional   two bidirectional layers (seed 001)
      rnngen derive --T 5 --handout --pdf  also a handout for a class: rnn_tanh_softmax_xent_t5_handout.{tex,pdf}
      rnngen derive --preset seed-004      seed 004's network, its document in the seed's symbols
      rnngen list                          every activation, output, loss and mapping

    \b
    -q prints the paths written, one a line. --json prints
      {"rnngen": version, "name": the network's name, "files": [paths written],
       "check": {"ok", "T", "finite_differences", "taylor_slope", "exact_oracle",
       "paths_vs_recursion", "failures", ...} or null (--no-check)}
    In Python: rnngen.derive(T=5, out="generated", ...) takes these options as keywords.
    """
    if options["pdf"] and not options["latex"]:
        raise click.UsageError("--pdf compiles the LaTeX document; drop --no-latex to use it")
    if options["handout"] and not (options["latex"] or options["markdown"]):
        raise click.UsageError("--handout writes a handout beside each document; drop --no-latex or add --markdown")
    spec = _spec(options.pop("T"), {f: options.pop(f) for f in FIXED}, options.pop("preset"))
    try:
        d = derive_spec(spec, **options, progress=ui.progress)
    except SpecError as e:
        raise click.UsageError(str(e)) from None
    except CheckFailed as e:
        ui.document({"name": e.name, "files": [], "check": e.report.as_dict()})
        if ui.text:
            _print_report(e.report)
        raise click.ClickException("the generated module fails its gradient check; nothing was written") from None
    except (OutputError, VerificationError) as e:
        raise click.ClickException(str(e)) from None
    spec, report = d.spec, d.report
    ui.document({"name": spec.name, "files": list(d.written), "check": report and report.as_dict()})

    ui.echo(f"rnngen {__version__}: {spec.name}")
    ui.echo(f"  {_describe(spec)}")
    for path, content in d.written.items():
        if isinstance(content, bytes):
            size = f"{getattr(content, 'pages', 0)} pages, {len(content) / 1024:.0f} KiB"
        else:
            size = f"{content.count(chr(10))} lines"
        ui.echo(str(path) if ui.verbosity == QUIET else f"  wrote {path}  ({size})", level=QUIET)
    if ui.text:
        click.echo("")
        _print_formulas(d.build)
        click.echo("")
        if report is None:
            click.echo("Check skipped (--no-check): the module is unverified.")
        else:
            _print_report(report)
    ui.done()


@preset_option
@cli.command()
@spec_options
@click.option(
    "--check/--no-check",
    default=True,
    show_default=True,
    help="Verify the gradients before printing. Example: --no-check",
)
@handout_option
def latex(T, check, preset, handout, **choices):
    """Print the LaTeX derivation to stdout, for piping (nothing is written).

    \b
    Examples:
      rnngen latex --T 5 > bptt.tex
      rnngen latex --T 3 --output sigmoid --loss binary_cross_entropy --mapping many-to-one | pdflatex
      rnngen latex --preset seed-003 --handout > seed003_handout.tex
    """
    spec = _spec(T, choices, preset)
    Output().progress(f"deriving {spec.name} (T = {spec.T})")  # stdout is the document: progress only
    result = build(spec)
    if check:
        _verify(False, Output(), build=result)
    click.echo(result.handout if handout else result.latex, nl=False)


@cli.command()
@spec_options
@size_options(8, 16, 8, source=" (read from --weights when given)")
@click.option(
    "--scale",
    type=click.FloatRange(min=0.0, min_open=True),
    default=1.0,
    show_default=True,
    help="||W||_2 of the random recurrent weights (a scaled orthogonal matrix). Example: --scale 1.5",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the random weights and data. Example: --seed 3"
)
@click.option(
    "--weights",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="An .npz of the parameters (as init_params returns them) instead of random ones. Example: --weights p.npz",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also draw the curves on a log scale into a PNG (needs matplotlib). Example: --plot flow.png",
)
@click.option("--force", is_flag=True, help="Overwrite a --plot file that rnngen did not write. Example: --force")
@output_options
def flow(T, n_x, n_h, n_y, scale, seed, weights, plot_path, force, ui, **choices):
    """Measure how the gradient flows back through time: ||dh_T/dh_k|| and ||dE/dh_k|| against the bound
    (a gated cell: against the path its gate carries the state along).

    \b
    Examples:
      rnngen flow --T 30                        random weights with ||W|| = 1
      rnngen flow --T 30 --scale 3 --plot flow.png
      rnngen flow --T 20 --hidden sigmoid --scale 4
      rnngen flow --T 10 --weights params.npz   weights saved with numpy.savez(**params)
      rnngen flow --T 30 --cell lstm            the cell path diag(f_t) beside every path

    \b
    -q prints the rows of the table alone. --json prints
      {"rnngen", "name", "sizes": {"n_x", "n_h", "n_y"}, "loss", "k": [0..T], "jacobian": [...],
       "gradient": [...], "gamma", "norm", "bound": [...], "plot": path or null}; a gated cell gives
       "direct" (the carried state's path through its gate alone), "state_jacobian" and
       "state_gradient" (the LSTM's c; null for the GRU) in place of "gamma", "norm" and "bound"
    """
    from rnngen import flow as F
    from rnngen.network_document import is_single_chain

    spec = _spec(T, choices)
    if spec.truncate is not None:
        raise click.UsageError("flow measures how the full gradient flows back; it does not take --truncate")
    if spec.masked:  # the measure runs every step as real
        raise click.UsageError("flow measures how the gradient flows back through every step; it does not take --mask")
    if not is_single_chain(spec):
        raise click.UsageError(
            "flow measures the Jacobian product of one recurrent chain; it takes one layer in one direction "
            "with --notation column or row (not --layers 2 or more, --bidirectional or --notation stacked)"
        )
    if plot_path is not None:
        try:
            check_targets([plot_path], force)  # before the work: a refused --plot costs nothing
            import matplotlib  # noqa: F401
        except OutputError as e:
            raise click.ClickException(str(e)) from None
        except ImportError:
            raise click.ClickException(f"--plot needs matplotlib: {install_hint('plot')}") from None
    ui.progress(f"deriving {spec.name} (T = {spec.T})")
    result = build(spec)
    try:
        if weights is not None:
            given = F.load_weights(weights)
            sizes = F.sizes_of(result, given)
            values = F.check_weights(result, given, sizes)
        else:
            sizes = (n_x, n_h, n_y)
            values = F.random_weights(result, sizes, seed, scale)
    except F.FlowError as e:
        raise click.ClickException(f"{weights}: {e}") from None
    ui.progress("measuring the flow")
    gated = cell_of(spec).gated
    measured = (F.measure_gated if gated else F.measure)(result, values, sizes, seed)
    recurrent = spec.role_names["recurrent"]
    # The plot is written before anything is printed: a reader that stops early (| head) cannot lose it.
    if plot_path is not None:
        title = (
            "the direct path and every path"
            if gated
            else rf"$\gamma \|{recurrent}\| = {measured.gamma * measured.norm:.3g}$"
        )
        try:
            write_all({plot_path: F.plot(measured, f"{spec.name}: {title}")}, force)
        except OutputError as e:
            raise click.ClickException(str(e)) from None
    curves = (
        {
            "direct": measured.direct,
            "state_jacobian": measured.state_jacobian,
            "state_gradient": measured.state_gradient,
        }
        if gated
        else {"gamma": measured.gamma, "norm": measured.norm, "bound": measured.bound}
    )
    ui.document(
        {
            "name": spec.name,
            "sizes": dict(zip(("n_x", "n_h", "n_y"), sizes)),
            "loss": measured.loss,
            "k": measured.ks,
            "jacobian": measured.jacobian,
            "gradient": measured.gradient,
            **curves,
            "plot": plot_path,
        }
    )
    ui.echo(f"rnngen {__version__}: gradient flow of {spec.name}, (n_x, n_h, n_y) = {sizes}, one sequence")
    lines = F.gated_table(measured) if gated else F.table(measured, recurrent)
    for line in lines if ui.verbosity > QUIET else lines[2:]:
        ui.echo(line, level=QUIET)
    if plot_path is not None:
        ui.echo(f"wrote {plot_path}")


def _print_formulas(result) -> None:
    """The gradients as the module computes them, then the deltas they are made of."""
    T = result.spec.T
    grads = {names.gradient(p) for p in result.derivation.graph.params}
    formulas = [f for f in result.formulas if f.stmts[0].section == "backward"]
    spec = result.spec
    if spec.truncate is None:
        click.echo("Gradients, as the module computes them ((N): equation number in the .tex; δv_t = dE/dv_t;")
    else:  # the deltas and gradients are the parts the truncation keeps, not the derivatives
        tau = spec.truncate
        click.echo(textwrap.fill(f"Truncated gradients at tau = {tau}: {spec.truncation_rule}.", 100))
        click.echo(
            "As the module computes them ((N): equation number in the .tex; δv_t = the part of dE/dv_t kept, "
            f"dE/dW the truncated gradient; δv^[{AGE}]_t: the part of δv_t whose paths crossed {AGE} recurrent edges, "
            f"{AGE} <= {tau - 1}, δv_t their sum;"
        )
    how = "one above the other" if result.spec.row else "side by side"
    click.echo(f"X[1..{T}] = [x_1 ... x_{T}] and Δz[1..{T}] = [δz_1 ... δz_{T}] set the steps {how}; 1 = ones):")
    for f in formulas:
        if f.stmts[0].target.name in grads:
            click.echo(f"  ({result.equations[f.key]}) {f.text}")
    click.echo("where")
    for f in formulas:
        if f.stmts[0].target.name not in grads:
            says = ""
            if family_of(f.stmts[0].target) == "fprime":  # a name the reader has not met yet
                f_name = "f" if result.spec.is_custom else result.spec.hidden
                says = f"   (f′_t = {f_name}'(z_t), the diagonal of ∂h_t/∂z_t, for all steps at once)"
                if result.spec.masked:  # the mask is hoisted into it
                    says = f"   (f′_t = m_t {f_name}'(z_t): ∂h_t/∂z_t, 0 on a padded step, for all steps at once)"
            click.echo(f"  ({result.equations[f.key]}) {f.text}{says}")


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--exact", is_flag=True, help="Also compare with the exact SymPy scalar oracle (T <= 8, slower).")
@size_options(*CHECK_SIZES[:3])
@click.option(
    "--batch",
    "B",
    type=click.IntRange(1, MAX_SIZE),
    default=CHECK_SIZES[3],
    show_default=True,
    help="Sequences in the checked batch. Example: --batch 4",
)
@click.option(
    "--dtype",
    type=click.Choice(["float64", "float32", "both"]),
    default="both",
    show_default=True,
    help="The dtypes whose paths are compared with the float64 result (the gradient checks run in float64). "
    "Example: --dtype float32",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**32 - 1),
    default=0,
    show_default=True,
    help="Seed of the random point the module is checked at. Example: --seed 7",
)
@output_options
def check(path, exact, n_x, n_h, n_y, B, dtype, seed, ui):
    """Verify an existing generated module: finite differences, Taylor test, every path, optionally the exact oracle.

    \b
    Examples:
      rnngen check generated/rnn_tanh_softmax_xent_t5.py --exact
      rnngen check generated/rnn_tanh_softmax_xent_t5.py --n-h 16 --batch 8 --dtype float32 --seed 3

    \b
    -q prints the verdict alone. --json prints
      {"rnngen", "path", "check": {"ok", "T", "sizes", "seed", "dtypes", "finite_differences",
       "taylor_slope", "exact_oracle", "paths_vs_recursion", "paths", "notes", "failures", ...}}
    """
    if not path.is_file():
        raise click.ClickException(f"{path} does not exist or is not a file")
    dtypes = ("float64", "float32") if dtype == "both" else (dtype,)
    where = dict(sizes=(n_x, n_h, n_y, B), seed=seed, dtypes=dtypes)
    report = _verify(exact, ui, module=_load(path), fail_loudly=False, **where)
    ui.document({"path": path, "check": report.as_dict()})
    if ui.text:
        _print_report(report)
    elif not ui.json:  # -q: the verdict alone
        ui.echo("ok" if report.ok else f"FAILED: {'; '.join(report.failures)}", level=QUIET)
    ui.done()
    if not report.ok:
        raise click.ClickException(f"{path} fails the gradient check")


_DTYPES = {"float64": ("float64",), "float32": ("float32",), "both": ("float64", "float32")}


@_optional_T
@cli.command()
@click.argument("module_path", metavar="[MODULE]", required=False, type=click.Path(dir_okay=False, path_type=Path))
@spec_options
@click.option(
    "--batch",
    "B",
    type=click.IntRange(1, MAX_SIZE),
    default=32,
    show_default=True,
    help="Sequences per batch. Example: --batch 1",
)
@size_options(64, 128, 64)
@click.option(
    "--dtype",
    type=click.Choice(list(_DTYPES)),
    default="both",
    show_default=True,
    help="Floating-point type of the run. Example: --dtype float32",
)
@click.option(
    "--samples",
    type=click.IntRange(1, 1000),
    default=7,
    show_default=True,
    help="Timed samples per contender; the table shows their median. Example: --samples 11",
)
@click.option(
    "--settle",
    type=click.FloatRange(0, 10),
    default=0.2,
    show_default=True,
    help="Seconds of rest before each sample, so BLAS threads stop spinning. Example: --settle 0.5",
)
@click.option(
    "--skip",
    type=click.Choice(list(CONTENDERS[1:])),
    multiple=True,
    help="Leave a contender out (repeatable). Example: --skip jax --skip tutorial",
)
@output_options
def bench(module_path, B, n_x, n_h, n_y, dtype, samples, settle, skip, T, ui, **choices):
    """Time a generated module against hand-written NumPy loops, PyTorch and JAX (those installed).

    Every contender computes the loss and all gradients of the same random
    problem; they must agree (float64: 1e-9 relative) before anything is
    timed. Samples are interleaved, with a rest before each; the table gives
    medians and each time as a multiple of rnngen's. MODULE is a generated
    .py file; without it the network is derived from the options.

    \b
    Examples:
      rnngen bench --T 25 --batch 1 --n-x 65 --n-h 100 --n-y 65
      rnngen bench generated/rnn_tanh_softmax_xent_t5.py --batch 1 --n-x 8 --n-h 16 --n-y 8

    \b
    -q prints the tables alone. --json prints
      {"rnngen", "kernels": [lines], "runs": [one per dtype: {"name", "T", "sizes": {"B", "n_x", "n_h", "n_y"},
       "dtype", "samples", "contenders": [{"name", "median_seconds", "ratio", "agreement", "compile_seconds"}],
       "skipped": {name: why}}]}
    """
    if module_path is not None:
        if not module_path.is_file():
            raise click.ClickException(f"{module_path} does not exist or is not a file")
        module = _load(module_path)
        spec = _module_spec(module_path, module)
    else:
        if T is None:
            raise click.UsageError("give --T (the unroll length) or a generated MODULE to time")
        spec = _spec(T, choices)
    if spec.truncate is not None:  # the contenders compute the full gradient
        raise click.UsageError("rnngen bench times the full gradient against other libraries; not --truncate")
    if spec.mapping == "one-to-many" or spec.delay:
        # the contenders (the hand loops, PyTorch, JAX) read an input at every step and a loss at
        # every step or the last
        raise click.UsageError(
            "rnngen bench times networks with an input at every step, and a loss at every step or at the last "
            "(many-to-many without --delay, many-to-one); not one-to-many or --delay"
        )
    if spec.padding == "pre":  # PyTorch's packed sequences are post-padded
        raise click.UsageError(
            "rnngen bench times masked networks with post-padding (PyTorch packs those); not --padding pre"
        )
    if module_path is None:
        ui.progress(f"deriving {spec.name} (T = {spec.T})")
        module = BPTT(build(spec)).module()
    unmasked = None
    if spec.masked:  # timed beside the unmasked module of the same network
        ui.progress("deriving the unmasked module to time beside it")
        unmasked = BPTT(build(dataclasses.replace(spec, masked=False))).module()
    libraries = kernels()
    for line in libraries:
        ui.echo(line)
    runs = []
    for name in _DTYPES[dtype]:
        ui.progress(f"timing {name}: checking the contenders agree, then {samples} samples each")
        try:
            sizes = (B, n_x, n_h, n_y)
            result = run_bench(module, spec, sizes, getattr(np, name), samples, settle, skip, plain=unmasked)
        except BenchError as e:
            raise click.ClickException(str(e)) from None
        runs.append(result.as_dict())
        if runs[1:] or ui.verbosity > QUIET:
            ui.echo("", level=QUIET)
        for line in table(result):
            ui.echo(line, level=QUIET)
    ui.document({"kernels": libraries, "runs": runs})
    ui.done()


def _module_spec(path, module) -> RNNSpec:
    """The spec a generated module was derived from (its ``SPEC``)."""
    try:
        return RNNSpec(**module.SPEC)
    except (AttributeError, TypeError, SpecError):
        raise click.ClickException(f"{path} is not an rnngen module (no valid SPEC)") from None


@cli.command(name="list")
@output_options
def list_choices(ui):
    """List the hidden activations, output layers, losses, mappings, notations and seed presets, one line each.

    \b
    -q prints the names alone. --json prints
      {"rnngen", "hidden", "output", "loss", "mapping", "notation", "preset"}, each {name: description}
    """
    sections = (
        (
            "hidden activations (--hidden)",
            [(n, elementwise(RNNSpec(T=1, hidden=n).hidden_key).description) for n in HIDDEN],
        ),
        ("", [("<expression in x>", f"custom, e.g. 'x/(1+abs(x))'; uses {expression.ALLOWED}")]),
        ("output layers (--output)", [(n, o.description) for n, o in OUTPUT_LAYERS.items()]),
        ("losses (--loss)", [(n, _loss_line(n, rule)) for n, rule in LOSSES.items()]),
        ("mappings (--mapping)", list(MAPPINGS.items())),
        ("notations (--notation)", list(NOTATIONS.items())),
        ("seed presets (--preset)", [(p.name, p.seed) for p in PRESETS.values()]),
    )
    keys = ("hidden", "", "output", "loss", "mapping", "notation", "preset")
    ui.document({key: dict(rows) for key, (_, rows) in zip(keys, sections) if key})
    for title, rows in sections:
        if title:
            ui.echo(title + ":")
        for name, what in rows:
            ui.echo(f"  {name:<22}{what}" if ui.verbosity > QUIET else name, level=QUIET)


def _loss_line(name, rule) -> str:
    """The loss's description, and for each output it can follow, its closed-form dE/do."""
    outputs = [o for o, loss in pairs() if loss == name]
    grads = [f"{o}: dE/do = {FUSED[(o, name)].formula()}" for o in outputs]
    return f"{rule.description}; after " + "; ".join(grads)


from rnngen.train import EXAMPLES as TRAIN_EXAMPLES
from rnngen.train import run as run_example

#: The largest budget ``rnngen train`` accepts: a slip (--steps 10000000) is refused, not run for hours.
MAX_STEPS, MAX_EPOCHS = 100_000, 1_000


@cli.command()
@click.argument("example", metavar="EXAMPLE", type=click.Choice(list(TRAIN_EXAMPLES)))
@click.option(
    "--seed",
    type=click.IntRange(0, 2**32 - 1),
    default=0,
    show_default=True,
    help="Seed of the data, the initial weights and the batches. Example: --seed 3",
)
@click.option(
    "--steps",
    type=click.IntRange(1, MAX_STEPS),
    default=None,
    help="Training steps (binary-addition 300, parity 2000 per attempt, sentiment 300). Example: --steps 500",
)
@click.option(
    "--epochs",
    type=click.IntRange(1, MAX_EPOCHS),
    default=None,
    help="Passes over the text (char only; 10). Example: --epochs 20",
)
@output_options
def train(example, seed, steps, epochs, ui):
    """Train an example network with its generated module; print what it learned.

    The module is derived and checked in memory (nothing is written) and trained with
    rnngen.optim, with a progress bar on stderr. The figure is measured on held-out data
    (sentiment: seed 004's three sentences, all it has).

    \b
    Examples:
      rnngen train binary-addition
      rnngen train char --epochs 20
      rnngen train parity --seed 3 --json

    \b
    -q prints the final figure alone. --json prints
      {"rnngen", "example", "accuracy", "loss", "seconds", "steps" or "epochs", "seed", ...}
      (char adds "sample", sentiment "predictions")

    \b
    EXAMPLE is one of:
    """
    budget = {"steps": steps, "epochs": epochs}
    wanted = TRAIN_EXAMPLES[example].budget
    for option, value in budget.items():
        if value is not None and option != wanted:
            raise click.UsageError(f"--{option} does not apply to {example}; it trains for --{wanted}")
    ui.progress(f"deriving and checking the {example} network")
    bar = _ProgressBar(
        f"training {example}", shown=ui.verbosity >= VERBOSE or ui.verbosity == NORMAL and sys.stderr.isatty()
    )
    try:
        with bar:
            result = run_example(example, budget[wanted], seed=seed, progress=bar.update)
    except (CheckFailed, ValueError) as e:
        raise click.ClickException(str(e)) from None
    ui.document(result.as_dict())
    ui.echo(f"rnngen train {example}: {result.setup}")
    for line in result.figure:
        ui.echo(line if ui.verbosity == QUIET else f"  {line}", level=QUIET)
    ui.done()


train.help = train.help.rstrip() + "".join(f"\n      {name:<17}{e.about}" for name, e in TRAIN_EXAMPLES.items())


class _ProgressBar:
    """click's progress bar on stderr, opened at the first step (when the total is known)."""

    def __init__(self, label: str, shown: bool):
        self.label, self.shown, self._bar, self._done = label, shown, None, 0

    def update(self, done: int, total: int) -> None:
        if not self.shown:
            return
        if self._bar is None:
            # redrawn about 200 times in all, not at every one of thousands of steps
            bar = click.progressbar(length=total, label=self.label, file=sys.stderr, update_min_steps=total // 200 + 1)
            self._bar = bar.__enter__()
        self._bar.update(done - self._done)
        self._done = done

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)


def _describe(spec) -> str:
    """One line saying what network a spec is."""
    bias = {(True, True): "biases b and c", (True, False): "bias b only", (False, True): "bias c only"}
    layers = f"{spec.layers} layers" if spec.layers > 1 else "1 layer"
    shape = f"{layers}{', bidirectional' if spec.bidirectional else ''}{', dE/dx' if spec.input_grad else ''}"
    shape += f", masked ({spec.padding}-padded lengths)" if spec.masked else ""
    vectors = (
        f"one matrix on the stacked {'row' if spec.row else 'vector'}" if spec.stacked else f"{spec.notation} vectors"
    )
    cell = cell_of(spec)
    hidden, names = f"{spec.hidden} hidden", ",".join(spec.names)
    if cell.gated:  # a weight and a bias per gate
        hidden = cell.title.format(hidden=spec.hidden)
        names = f"{spec.names[0]}_·, {spec.names[1]}_· (one per gate) and {spec.names[2]}"
        bias = {k: v.replace(" b ", " b_· ") for k, v in bias.items()}
    return (
        f"{shape}: {hidden}, {spec.output} output, {spec.loss} loss, {spec.mapping}, {vectors}, "
        f"matrices {names}, {bias.get((spec.hidden_bias, spec.output_bias), 'no biases')}, T = {spec.T}"
    )


def _load(path):
    try:
        return load_module(path)
    except VerificationError as e:
        raise click.ClickException(str(e)) from None


def _verify(exact: bool, ui: Output, module=None, build=None, fail_loudly: bool = True, **where) -> Report:
    """Check an imported module, or a build's module before it is written; ``where`` holds
    ``sizes``, ``seed`` and ``dtypes`` when they are not the defaults. Each stage of the check
    is a progress line (``ui.progress``).
    """
    progress = ui.progress
    try:
        if build is None:
            report = check_module(module, exact=exact, progress=progress, **where)
        else:
            report = check_build(build, exact=exact, progress=progress, **where)
    except VerificationError as e:
        raise click.ClickException(str(e)) from None
    if fail_loudly and not report.ok:
        _print_report(report)
        raise click.ClickException("the generated module fails its gradient check; nothing was written")
    return report


def _figures(label: str, values: dict, params: list, note: str) -> None:
    """One row of the report: a label, one figure per parameter (blank where there is none), a note."""
    cells = "".join(f"{values[n]:9.1e}" if n in values else " " * 9 for n in params)
    click.echo(f"  {label:<21}{cells}   ({note})")


def _print_report(report: Report) -> None:
    n_x, n_h, n_y, B = report.sizes
    click.echo(f"Check, float64, (n_x, n_h, n_y, B) = ({n_x}, {n_h}, {n_y}, {B}), T = {report.T}, seed {report.seed}:")
    if report.horizon is not None:
        _print_truncated(report)
        return
    params = list(report.fd)
    click.echo("  parameter            " + "".join(f"{n:>9}" for n in params))
    _figures("finite differences", report.fd, params, f"limit {FD_TOLERANCE:.0e}")
    if report.extrapolated:
        _figures("higher-order diff.", report.extrapolated, params, "extrapolated, where the plain ones missed")
    if report.exact is not None:
        ex = report.exact
        _figures("exact oracle", ex.grads, params, f"limit {EXACT_TOLERANCE:.0e}; loss {ex.loss:.1e}")
    if report.forms is not None:
        _figures("paths vs recursion", report.forms, params, f"limit {FORMS_TOLERANCE:.0e}; the two derivation forms")
    click.echo(f"  Taylor remainder slope {report.taylor:.3f} (2 for a correct gradient)")
    if report.seed_formulas:
        worst = max(report.seed_formulas.values())
        numbers = ", ".join(f"({n})" for n in report.seed_formulas)
        click.echo(f"  the seed's own formulas {numbers} vs the module: {worst:.1e} (limit {FORMS_TOLERANCE:.0e})")
    if report.state:
        st = report.state
        click.echo(
            f"  a state given per sequence: its gradient vs finite differences {st['finite_differences']:.1e}"
            + (f" (higher-order {st['higher_order']:.1e})" if "higher_order" in st else "")
            + (
                f", Taylor slope {st['taylor_slope']:.3f};"
                if st["taylor_slope"] is not None
                else ", Taylor slope not read (the loss does not move with the state above rounding);"
            )
        )
        click.echo(
            f"    the learned state given as every sequence's changes nothing ({st['broadcast']:.1e});"
            f" final state vs plain loop {st['final_state']:.1e}"
        )
    if report.padded is not None:
        click.echo(
            f"  with a mask of real steps (every check above; sequences of lengths 1 and T, more drawn for B > 2):"
            f" a padded step's input and target change nothing ({report.padded:.1e})"
        )
    _print_paths_and_notes(report)
    if report.ok:
        why = " (an ill-conditioned difference quotient, see the note)" if report.ill_conditioned else ""
        click.echo(f"  ok: worst finite-difference error {max(report.fd.values()):.1e}{why}")
    else:
        click.echo(f"  FAILED: {'; '.join(report.failures)}")


def _print_paths_and_notes(report: Report) -> None:
    """Every path of the module against the verified float64 result, then the report's notes."""
    if report.paths:
        click.echo(
            f"  every path against float64 loss_and_grads, worst relative error"
            f" (limit {ROUNDING_FACTOR} eps x the figure's condition number, plus underflow):"
        )
        for name, path in report.paths.items():
            # an undecided figure's error says nothing (the note says why): the worst of the others, and its name
            errors = [e for q, e in path.errors.items() if q not in path.undecided] or [0.0]
            worst = float("nan") if any(e != e for e in errors) else max(errors)
            undecided = f" ({', '.join(path.undecided)} undecided)" if path.undecided else ""
            click.echo(f"    {name:<28}{worst:9.1e}   {'FAILED' if path.failures else 'ok'}{undecided}")
    for note in report.notes:
        click.echo(f"  note: {note}")


def _print_truncated(report: Report) -> None:
    """The report of a truncated module: the restricted sum over paths in place of the differences."""
    from rnngen.truncated import RESTRICTED_TOLERANCE

    tr = report.truncated
    if tr:
        click.echo(
            f"  truncated (tau = {report.horizon}) vs the full sum over paths with at most tau - 1 recurrent "
            f"Jacobians (limit {RESTRICTED_TOLERANCE:.0e}):"
        )
        click.echo(
            f"    parameters {tr['parameters']:.1e}, a state given per sequence {tr['state']:.1e}, "
            f"final state vs plain loop {tr['final_state']:.1e}"
        )
    if report.forms is not None:
        worst = max(report.forms.values())
        click.echo(f"  paths vs recursion {worst:.1e}   (limit {FORMS_TOLERANCE:.0e}; the two derivation forms)")
    _print_paths_and_notes(report)
    if report.ok:
        click.echo(f"  ok: worst error against the restricted sum over paths {max(tr.values()):.1e}")
    else:
        click.echo(f"  FAILED: {'; '.join(report.failures)}")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds like Ctrl-C: every ``finally``
    runs (``write_all`` removes its temporary files) before the process ends."""


def _terminate(signum, frame):
    raise Terminated


def main() -> None:
    """Console entry point: click's errors become one line, and so do ours."""
    signal.signal(signal.SIGTERM, _terminate)
    if hasattr(signal, "SIGPIPE"):
        # A reader that stops early (| head) ends the process quietly, as it ends any Unix tool
        # (exit 141 in the shell); click would instead exit 1 and silence stderr too. Files are
        # written before anything is printed, so nothing is lost.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        code = cli.main(prog_name="rnngen", standalone_mode=False)
    except click.exceptions.Abort as e:
        terminated = isinstance(e.__cause__, Terminated)
        click.echo(f"rnngen: {'terminated' if terminated else 'interrupted'}", err=True)
        sys.exit(128 + (signal.SIGTERM if terminated else signal.SIGINT))
    except click.ClickException as e:
        click.echo(f"rnngen: error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except OSError as e:
        click.echo(f"rnngen: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
