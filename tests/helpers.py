"""Assertions shared by the robustness and fault tests: run the CLI in-process, check a one-sentence error."""

from __future__ import annotations

from typer.testing import CliRunner

from cli import app


def run_cli(*args) -> tuple[int, str, str]:
    """Run the CLI in-process; fail on any escaped exception (a traceback for the user)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result.exit_code, result.stdout, result.stderr


def one_sentence_error(code: int, err: str, *needles: str) -> str:
    """Exit 1, one ``Error: ...`` line last on stderr holding every needle, no traceback; returns that line.

    Only "Skipping member ..." notes (vote naming incomplete members) may come before it.
    """
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("Error: "), err
    assert all(line.startswith("Skipping member ") for line in lines[:-1]), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[-1], (needle, lines[-1])
    return lines[-1]
