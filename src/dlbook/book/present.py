"""One way to put numbers on the page: tables and numbers formatted for a reader.

Every table in the book goes through :func:`table`: 3-4 significant digits, fractions shown as
percentages where the column says so, no NaN or None (a missing value reads as what was not run
and why), and an index that is hidden unless it carries meaning. Sentences quote numbers through
:func:`number`, :func:`percent` and :func:`interval`, so the page and the prose round alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

NOT_RUN = "not run"


def _missing(value) -> bool:
    if value is None:
        return True
    try:
        return isinstance(value, float) and math.isnan(value)
    except TypeError:
        return False


def number(value, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits, without e-notation for ordinary magnitudes.

    >>> number(0.0024913), number(1234.5), number(12.0), number(-0.000012)
    ('0.00249', '1234', '12', '-1.20e-05')
    """
    if _missing(value):
        return NOT_RUN
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    value = float(value)
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude >= digits - 1:
        return f"{value:.0f}"
    if magnitude < -4:
        return f"{value:.{digits - 1}e}"
    decimals = digits - 1 - magnitude
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def percent(fraction, decimals: int = 1) -> str:
    """A fraction in [0, 1] as a percentage: ``percent(0.9893) == '98.9%'``."""
    if _missing(fraction):
        return NOT_RUN
    return f"{100 * float(fraction):.{decimals}f}%"


def points(value, decimals: int = 1) -> str:
    """A signed difference in percentage points: ``points(2.25) == '+2.2 points'``."""
    if _missing(value):
        return NOT_RUN
    return f"{float(value):+.{decimals}f} points"


def interval(low, high, as_percent: bool = True, decimals: int = 1) -> str:
    """A 95% interval: ``interval(0.98, 0.997) == '95% CI 98.0%-99.7%'``; with a negative end,
    ``'95% CI -84.6% to 26.1%'`` (a dash would read as a minus sign)."""
    if _missing(low) or _missing(high):
        return ""
    if as_percent:
        joint = " to " if min(low, high) < 0 else "-"
        return f"95% CI {percent(low, decimals)}{joint}{percent(high, decimals)}"
    return f"95% CI {number(low)} to {number(high)}"


def points_interval(low, high, unit: str = "") -> str:
    """A 95% interval of a difference already in points: ``'95% CI -1.2 to +3.4'`` + ``unit``."""
    if _missing(low) or _missing(high):
        return ""
    return f"95% CI {float(low):+.1f} to {float(high):+.1f}{unit}"


def table(
    frame,
    percent_columns: Iterable[str] = (),
    missing: Mapping[str, str] | str = NOT_RUN,
    index: bool = False,
    digits: int = 3,
    max_rows: int | None = None,
):
    """A DataFrame formatted for the page, every cell a string.

    Parameters
    ----------
    frame : pandas.DataFrame
    percent_columns : columns holding fractions in [0, 1], shown as percentages.
    missing : what a missing cell says, per column (``{"accuracy": "weights not available
        offline"}``) or one text for all; never NaN or None.
    index : keep the index as the first column (when it names the rows).
    digits : significant digits of other numbers.
    max_rows : keep the first ``max_rows`` rows and add one row saying how many were left out.

    Returns
    -------
    pandas.DataFrame of str, with a plain 0..n-1 index that :func:`show` hides.
    """
    import pandas as pd

    data = frame.reset_index() if index else frame.reset_index(drop=True)
    percent_columns = set(percent_columns)
    unknown = percent_columns - set(data.columns)
    if unknown:
        raise ValueError(f"percent_columns {sorted(unknown)} are not columns of the table")

    def reason(column) -> str:
        return missing.get(column, NOT_RUN) if isinstance(missing, Mapping) else missing

    def cell(value, column) -> str:
        if _missing(value):
            return reason(column)
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "yes" if value else "no"
        if column in percent_columns:
            return percent(value)
        try:
            return number(value, digits)
        except (TypeError, ValueError):
            return str(value)

    formatted = pd.DataFrame(
        {column: [cell(v, column) for v in data[column]] for column in data.columns}
    )
    if max_rows is not None and len(formatted) > max_rows:
        left_out = len(formatted) - max_rows
        formatted = formatted.head(max_rows)
        filler = {column: "" for column in formatted.columns}
        filler[formatted.columns[0]] = f"... {left_out} more rows"
        formatted = pd.concat([formatted, pd.DataFrame([filler])], ignore_index=True)
    return formatted


def show(frame, **options):
    """:func:`table`, styled for the page: no index column, scrolls inside the page if wide."""
    formatted = table(frame, **options)
    return (
        formatted.style.hide(axis="index")
        .set_table_attributes('class="dlbook-table"')
        .set_table_styles([{"selector": "td, th", "props": "text-align: right;"}])
    )
