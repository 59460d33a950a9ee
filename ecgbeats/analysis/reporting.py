"""Filling report templates with figures read from the pipeline's outputs, so reports never drift
from the numbers they describe."""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import Any


class ReportError(ValueError):
    """A template names a value the stage did not provide."""


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 3) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(cell, digits) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def render(template: str, values: Mapping[str, Any]) -> str:
    """Substitute ``$name`` placeholders (``$$`` is a literal dollar); a value the template names
    but the stage does not provide is an error, never a blank or a placeholder left in the report."""
    text_values = {key: value if isinstance(value, str) else fmt(value) for key, value in values.items()}
    try:
        return string.Template(template).substitute(text_values)
    except KeyError as err:
        raise ReportError(f"the template uses ${err.args[0]}, which the stage does not provide") from err
    except ValueError as err:  # a lone "$" not followed by a name: write "$$" in templates
        raise ReportError(f"the template has a malformed placeholder: {err}") from err


def q_note(q_test: int, q_holdout: int) -> str:
    """Why the N, S, V, F average is the one to read, when a handful of Q beats is a whole class in macro-F1."""
    if q_test == 0 and q_holdout == 0:
        return ""
    return (
        f"Q has only {q_test:,} beat{'s' * (q_test != 1)} in the in-patient test and {q_holdout:,} in the holdout, "
        "yet counts as one class in that mean. "
    )
