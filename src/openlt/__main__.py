"""`python -m openlt` is the same as the `openlt` console script."""

from openlt.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
