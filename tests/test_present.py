"""The page's one formatter: numbers, intervals and tables as a reader sees them."""

import numpy as np
import pandas as pd
import pytest

from dlbook.book import present


def test_number_keeps_three_significant_digits_without_e_notation():
    assert present.number(0.0024913) == "0.00249"
    assert present.number(1234.5) == "1234"
    assert present.number(12.0) == "12"
    assert present.number(-0.000012) == "-1.20e-05"
    assert present.number(None) == present.NOT_RUN


def test_intervals_in_percent_and_in_points():
    assert present.interval(0.98, 0.997) == "95% CI 98.0%-99.7%"
    assert present.interval(None, 0.9) == ""
    assert present.points_interval(-1.234, 3.4) == "95% CI -1.2 to +3.4"
    assert present.points_interval(1.0, 2.0, " points") == "95% CI +1.0 to +2.0 points"
    assert present.points_interval(np.nan, 2.0) == ""


def test_table_has_no_nan_and_shows_fractions_as_percentages():
    frame = pd.DataFrame({"a": [0.0024913, None, 1234.5], "acc": [0.98, 0.5, np.nan]})
    shown = present.table(frame, percent_columns=["acc"], missing={"acc": "weights not offline"})
    assert shown["a"].tolist() == ["0.00249", present.NOT_RUN, "1234"]
    assert shown["acc"].tolist() == ["98.0%", "50.0%", "weights not offline"]


def test_table_collapses_long_tables_and_rejects_unknown_percent_columns():
    shown = present.table(pd.DataFrame({"x": range(10)}), max_rows=3)
    assert len(shown) == 4 and shown["x"].iloc[-1] == "... 7 more rows"
    with pytest.raises(ValueError, match="not columns"):
        present.table(pd.DataFrame({"x": [1]}), percent_columns=["y"])


def test_interval_with_a_negative_end_reads_to():
    assert present.interval(0.98, 0.997) == "95% CI 98.0%-99.7%"
    assert present.interval(-0.846, 0.261) == "95% CI -84.6% to 26.1%"
