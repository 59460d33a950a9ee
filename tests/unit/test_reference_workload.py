"""The benchmarks' reference workload: fixed work, and figures per reference defined once."""

from __future__ import annotations

import math

import pytest

from benchmarks import common
from benchmarks.common import Reference, ReferenceRun, figure, machine, reference_workload

# the mean of the last product plus the mean square of the filtered signal, for seed 0; a change here means
# the reference does other work, and figures per reference before and after the change are not comparable
CHECKSUM = 128.26761257147533


def test_reference_workload_returns_positive_finite_times_and_the_same_work_each_call() -> None:
    first = reference_workload(repeats=1)
    second = reference_workload(repeats=2)
    for result in (first, second):
        assert math.isfinite(result.matmul_ms) and result.matmul_ms > 0
        assert math.isfinite(result.sosfilt_ms) and result.sosfilt_ms > 0
        assert result.ms == pytest.approx(result.matmul_ms + result.sosfilt_ms)
        assert len(result.load) == 3
    assert first.checksum == second.checksum
    assert first.checksum == pytest.approx(CHECKSUM, rel=1e-9)
    assert (first.repeats, second.repeats) == (1, 2)


def test_machine_names_the_cores_and_blas() -> None:
    text = machine()
    assert "cores" in text and text.strip()


def test_rates_per_reference_are_rate_times_the_mean_reference_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    results = iter([Reference(15.0, 5.0, CHECKSUM, 1, (0.0, 0.0, 0.0)), Reference(20.0, 10.0, CHECKSUM, 1, (1, 1, 1))])
    monkeypatch.setattr(common, "reference_workload", lambda: next(results))
    run = ReferenceRun()
    assert run.ms == 20.0  # before alone until the run is finished
    run.finish()
    assert run.ms == 25.0  # the mean of before and after
    assert run.per_reference(10_000) == pytest.approx(250.0)
    assert run.rate(10_000, "beats") == "10,000 beats/s (250 beats/ref)"
    assert run.as_dict()["after"]["ms"] == 30.0


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.001234, "0.00123"), (2.164, "2.16"), (21.64, "21.6"), (216.4, "216"), (12345.6, "12,346"), (0.0, "0")],
)
def test_figure_keeps_three_significant_digits(value: float, text: str) -> None:
    assert figure(value) == text
