"""The committed examples under ``generated/``, and the command that refreshes them.

Run from the repository root::

    python -m rnngen.examples

Each example is derived, verified (finite differences and Taylor test) and
written; ``tests/test_generated.py`` fails when a committed file differs from
what this produces.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rnngen.emit import write_all
from rnngen.pipeline import build
from rnngen.spec import RNNSpec
from rnngen.verify import VerificationError, check_build

#: The specs whose module and document are committed. T = 20 shows how the
#: document abbreviates long path expansions.
EXAMPLES = (RNNSpec(T=5), RNNSpec(T=20))


def refresh(out_dir: Path = Path("generated")) -> list:
    """Derive, verify and write every example; return the paths written."""
    written = []
    for spec in EXAMPLES:
        result = build(spec)
        if not check_build(result).ok:
            raise VerificationError(f"{spec.name} fails its gradient check")
        files = result.files(out_dir)
        write_all(files)
        written.extend(files)
    return written


def main() -> None:
    if not Path("generated").is_dir() or not Path("pyproject.toml").is_file():
        sys.exit("rnngen: error: run python -m rnngen.examples from the repository root (it writes generated/)")
    for path in refresh():
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
