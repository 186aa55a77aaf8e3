"""``python -m rnngen``: the same command line as ``rnngen``."""

from rnngen.cli import main

if __name__ == "__main__":
    main()
