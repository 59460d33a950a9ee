"""The baseline's two median filters give scipy's values bit for bit, on and off the ADC grid."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import median_filter
from scipy.signal import resample_poly

from ecgbeats.data.dataset import read_record_signals
from ecgbeats.processing import baseline
from ecgbeats.processing.baseline import median_baseline
from tests.conftest import FIXTURE_MIRROR, FIXTURE_RECORDS


def scipy_baseline(x: np.ndarray, first: int, second: int) -> np.ndarray:
    return median_filter(median_filter(x, size=first, mode="nearest"), size=second, mode="nearest")


def assert_same(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(expected))  # 0.0 and -0.0 told apart


def counting_scipy(monkeypatch) -> list[int]:
    calls: list[int] = []

    def spy(x, size, mode):
        calls.append(size)
        return median_filter(x, size=size, mode=mode)

    monkeypatch.setattr(baseline, "median_filter", spy)
    return calls


@pytest.mark.parametrize("record", FIXTURE_RECORDS)
def test_records_on_their_grid_give_scipys_baseline_without_scipy(record, monkeypatch):
    signal = read_record_signals(FIXTURE_MIRROR, record).signal
    calls = counting_scipy(monkeypatch)
    for lead in signal.T:
        for first, second in ((73, 217), (71, 215), (1, 1), (3, 5)):
            assert_same(median_baseline(lead, first, second), scipy_baseline(np.ascontiguousarray(lead), first, second))
    assert calls == []  # the level counts did it all


def test_off_the_grid_goes_to_scipy_with_the_same_values(monkeypatch):
    lead = read_record_signals(FIXTURE_MIRROR, FIXTURE_RECORDS[0]).signal[:, 0]
    resampled = resample_poly(lead, 25, 36)  # 250 Hz: continuous values
    calls = counting_scipy(monkeypatch)
    assert_same(median_baseline(resampled, 73, 217), scipy_baseline(resampled, 73, 217))
    assert calls == [73, 217]


@pytest.mark.parametrize(
    "signal",
    [
        np.array([0.0, -0.0, 0.005, -0.0, 0.0, 0.01, -0.005]),  # -0.0 equals 0.0: scipy picks which
        np.array([0.1, np.nan, 0.2, 0.3, 0.1]),
        np.array([0.1, np.inf, 0.2, -0.3, 0.1]),
        np.array([0.0, 1e-300, 1.0]),  # two levels 1e300 grid steps apart
    ],
)
def test_signals_a_level_count_cannot_take_are_scipys(signal, monkeypatch):
    calls = counting_scipy(monkeypatch)
    np.testing.assert_array_equal(median_baseline(signal, 3, 5), scipy_baseline(signal, 3, 5))
    assert calls == [3, 5]


@pytest.mark.parametrize("n", [1, 2, 5, 40, 500])
def test_short_constant_and_random_grids(n):
    rng = np.random.default_rng(n)
    for x in (
        np.full(n, 0.25),
        rng.integers(-1024, 1024, n) / 200.0,  # an 11-bit ADC at 200 counts per mV, as MIT-BIH
        np.repeat(rng.integers(0, 4, n), 9)[:n] * 0.005,  # long flat stretches: ties
        np.sort(rng.integers(0, 50, n)) / 7.0,  # a ramp on a grid that is not a power of two
    ):
        for first, second in ((3, 5), (73, 217), (2 * n + 1, 1)):
            assert_same(median_baseline(x, first, second), scipy_baseline(x, first, second))


def test_empty_signal():
    assert median_baseline(np.zeros(0), 73, 217).shape == (0,)


def test_a_finer_step_the_sample_misses_still_gives_every_level(monkeypatch):
    """The grid step is guessed from a strided sample; values between its steps (here a few at half
    steps, off the sample) send the levels to the sorted signal, with the same result."""
    rng = np.random.default_rng(0)
    x = rng.integers(-200, 200, 50_000) * 0.01
    stride = len(x) // baseline.SAMPLE_FOR_STEP
    x[1::stride] += 0.005  # never on the sample's stride
    guess = np.diff(np.unique(x[::stride])).min()
    assert guess == pytest.approx(0.01)  # the sample misses the finer step...
    assert len(baseline._grid_table(x, x.min(), guess, int(np.rint(np.ptp(x) / guess)))[0]) == 0  # ...the grid sees it
    levels, ranks = baseline._levels(x)
    np.testing.assert_array_equal(levels, np.unique(x))
    np.testing.assert_array_equal(levels[ranks], x)
    calls = counting_scipy(monkeypatch)
    assert_same(median_baseline(x, 73, 217), scipy_baseline(x, 73, 217))
    assert calls == []
