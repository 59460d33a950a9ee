from __future__ import annotations

import pytest

from ecgbeats.analysis.reporting import ReportError, markdown_table, render


def test_render_fills_values_and_formats_numbers():
    text = render("accuracy $acc on $$5 of $n beats", {"acc": 0.98765, "n": 21892})
    assert text == "accuracy 0.988 on $5 of 21,892 beats"


def test_a_value_the_stage_does_not_provide_is_an_error_not_a_blank():
    with pytest.raises(ReportError, match=r"\$missing"):
        render("macro-F1 $missing", {})


def test_markdown_table_renders_missing_values_as_a_dash():
    table = markdown_table(["class", "F1"], [["N", 0.99], ["Q", None]])
    assert table.splitlines() == ["| class | F1 |", "|---|---|", "| N | 0.990 |", "| Q | – |"]
