"""`openlt` called as a fixture calls it, with its messages in the failure when it does not exit 0 (a fixture's bare
`assert main([...]) == 0` showed CI only "assert 2 == 0", not why)."""

from __future__ import annotations

import contextlib
import io


def main_ok(args) -> str:
    """openlt's main on `args` (made strings); its stdout. AssertionError with the exit status and the last 2,000
    characters of stderr when the status is not 0."""
    from openlt.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    assert code == 0, f"openlt {args[0]} exited {code}: {err.getvalue()[-2000:]}"
    return out.getvalue()
