"""Tests for brain_lib.validation.PurgedWalkForward."""

from __future__ import annotations

import doctest
import itertools

import numpy as np
import pandas as pd
import pytest

import brain_lib.validation as validation_module
from brain_lib.labels import forward_return, label_end_index
from brain_lib.validation import PurgedWalkForward

N_SAMPLES = 240

GRID = list(
    itertools.product(
        [1, 2, 5],  # n_splits
        [None, 1, 7, 30],  # test_size
        [None, 1, 25],  # train_size
        [0, 1, 3, 24],  # purge
        [0, 2],  # embargo
    )
)


@pytest.mark.parametrize(("n_splits", "test_size", "train_size", "purge", "embargo"), GRID)
def test_fold_invariants(
    n_splits: int,
    test_size: int | None,
    train_size: int | None,
    purge: int,
    embargo: int,
) -> None:
    cv = PurgedWalkForward(
        n_splits=n_splits,
        test_size=test_size,
        train_size=train_size,
        purge=purge,
        embargo=embargo,
    )
    X = np.zeros((N_SAMPLES, 3))
    folds = list(cv.split(X))
    assert cv.get_n_splits(X) == len(folds) == n_splits

    size = test_size if test_size is not None else N_SAMPLES // (n_splits + 1)
    expected_first_test = N_SAMPLES - n_splits * size
    all_test = np.concatenate([test for _, test in folds])
    # Test folds are disjoint, adjacent, in order and cover exactly the last n_splits*size rows.
    np.testing.assert_array_equal(all_test, np.arange(expected_first_test, N_SAMPLES))

    for k, (train, test) in enumerate(folds):
        assert train.dtype.kind == "i" and test.dtype.kind == "i"
        assert len(test) == size
        assert np.all(np.diff(test) == 1)
        assert test[0] == expected_first_test + k * size
        assert len(train) >= 1
        assert np.all(np.diff(train) == 1)  # contiguous, ascending
        test_start, test_end = int(test[0]), int(test[-1])
        # Train always precedes test.
        assert train.max() < test.min()
        # Purge: label window (i, i+purge] does not reach the test fold.
        assert np.all(train + purge < test_start)
        # Embargo: no training row inside the embargo gap.
        assert np.all(train < test_start - purge - embargo)
        # Training ends exactly at the gap (nothing else is dropped).
        assert train[-1] == test_start - purge - embargo - 1
        if train_size is None:
            assert train[0] == 0
        else:
            assert len(train) <= train_size
            assert len(train) == min(train_size, test_start - purge - embargo)
        assert test_end < N_SAMPLES


@pytest.mark.parametrize("seed", range(5))
def test_brute_force_no_label_overlap(seed: int) -> None:
    """Recompute overlap of every training label interval with the test fold from scratch."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(150, 400))
    horizon = int(rng.integers(1, 12))
    embargo = int(rng.integers(0, 5))
    n_splits = int(rng.integers(1, 6))
    train_size = None if rng.random() < 0.5 else int(rng.integers(10, 60))
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    index = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC", name="ts")
    candles = pd.DataFrame({"close": closes}, index=index)
    y = forward_return(candles, horizon=horizon)
    ends = label_end_index(n, horizon)

    cv = PurgedWalkForward(n_splits=n_splits, train_size=train_size, purge=horizon, embargo=embargo)
    for train, test in cv.split(candles, y):
        test_rows = set(test.tolist())
        test_start, test_end = min(test_rows), max(test_rows)
        for i in train.tolist():
            label_rows = set(range(i + 1, i + horizon + 1))  # closes used by label i
            assert not label_rows & test_rows
            assert not (i + 1 <= test_end and i + horizon >= test_start)
            assert ends[i] < test_start
            assert not np.isnan(y.iloc[i])  # training labels are all available


def test_expanding_vs_sliding_example() -> None:
    cv = PurgedWalkForward(n_splits=2, test_size=4, purge=3)
    folds = [(tr.tolist(), te.tolist()) for tr, te in cv.split(range(20))]
    assert folds == [
        (list(range(9)), [12, 13, 14, 15]),
        (list(range(13)), [16, 17, 18, 19]),
    ]
    cv = PurgedWalkForward(n_splits=2, test_size=4, train_size=4, purge=3)
    folds = [(tr.tolist(), te.tolist()) for tr, te in cv.split(np.zeros(20))]
    assert folds == [([5, 6, 7, 8], [12, 13, 14, 15]), ([9, 10, 11, 12], [16, 17, 18, 19])]


def test_default_test_size_like_timeseriessplit() -> None:
    cv = PurgedWalkForward(n_splits=3, purge=0)
    folds = list(cv.split(np.zeros(20)))
    # sklearn TimeSeriesSplit(n_splits=3) on 20 rows: test size 5, tests 5-9, 10-14, 15-19.
    assert [te.tolist() for _, te in folds] == [
        list(range(5, 10)),
        list(range(10, 15)),
        list(range(15, 20)),
    ]
    assert [tr.tolist() for tr, _ in folds] == [list(range(5)), list(range(10)), list(range(15))]


def test_accepts_dataframe_and_list() -> None:
    cv = PurgedWalkForward(n_splits=2, purge=1)
    frame = pd.DataFrame({"a": np.arange(12)})
    a = [(tr.tolist(), te.tolist()) for tr, te in cv.split(frame)]
    b = [(tr.tolist(), te.tolist()) for tr, te in cv.split(list(range(12)))]
    assert a == b


def test_describe_matches_split() -> None:
    cv = PurgedWalkForward(n_splits=4, test_size=10, train_size=30, purge=2, embargo=1)
    X = np.zeros(100)
    rows = cv.describe(100)
    assert len(rows) == 4
    for k, (row, (train, test)) in enumerate(zip(rows, cv.split(X), strict=True)):
        assert row["fold"] == k
        assert row["train_start"] == train[0] and row["train_end"] == train[-1]
        assert row["test_start"] == test[0] and row["test_end"] == test[-1]
        assert row["n_train"] == len(train) and row["n_test"] == len(test)
        assert all(type(v) is int for v in row.values())


def test_repr_and_params() -> None:
    cv = PurgedWalkForward(n_splits=3, test_size=5, train_size=None, purge=2, embargo=1)
    assert repr(cv) == (
        "PurgedWalkForward(n_splits=3, test_size=5, train_size=None, purge=2, embargo=1, "
        "min_train_size=1)"
    )
    assert cv.get_params() == {
        "n_splits": 3,
        "test_size": 5,
        "train_size": None,
        "purge": 2,
        "embargo": 1,
        "min_train_size": 1,
    }
    assert cv.get_n_splits() == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_splits": 0}, "n_splits"),
        ({"n_splits": 2.0}, "n_splits"),
        ({"test_size": 0}, "test_size"),
        ({"train_size": 0}, "train_size"),
        ({"purge": -1}, "purge"),
        ({"embargo": -1}, "embargo"),
        ({"min_train_size": 0}, "min_train_size"),
        ({"purge": True}, "purge"),
    ],
)
def test_invalid_params(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PurgedWalkForward(**kwargs)  # type: ignore[arg-type]


def test_too_few_samples() -> None:
    with pytest.raises(ValueError, match="too few samples"):
        list(PurgedWalkForward(n_splits=5).split(np.zeros(5)))
    with pytest.raises(ValueError, match="too few samples"):
        list(PurgedWalkForward(n_splits=2, test_size=10).split(np.zeros(20)))
    with pytest.raises(ValueError, match="too few samples"):
        PurgedWalkForward(n_splits=2, test_size=10).describe(15)


def test_min_train_size_violation() -> None:
    # First test fold starts at row 5; purge 3 + embargo 2 leave no training rows.
    cv = PurgedWalkForward(n_splits=3, test_size=5, purge=3, embargo=2)
    with pytest.raises(ValueError, match="fold 0 has 0 training rows"):
        list(cv.split(np.zeros(20)))
    cv = PurgedWalkForward(n_splits=3, test_size=5, purge=1, min_train_size=5)
    with pytest.raises(ValueError, match="min_train_size=5"):
        list(cv.split(np.zeros(20)))
    # Enough rows: passes.
    cv = PurgedWalkForward(n_splits=3, test_size=5, purge=1, min_train_size=4)
    assert len(list(cv.split(np.zeros(20)))) == 3


def test_sliding_window_shorter_than_min_train_size() -> None:
    cv = PurgedWalkForward(n_splits=2, train_size=3, min_train_size=5)
    with pytest.raises(ValueError, match="min_train_size"):
        list(cv.split(np.zeros(50)))


def test_doctests() -> None:
    result = doctest.testmod(validation_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
