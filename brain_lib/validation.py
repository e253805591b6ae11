"""Purged walk-forward cross-validation for time-ordered samples.

:class:`PurgedWalkForward` is a scikit-learn-compatible (duck-typed) cross-validator: it
can be passed as ``cv=`` wherever scikit-learn accepts a splitter, without this module
importing scikit-learn.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["PurgedWalkForward"]


def _check_int(name: str, value: object, minimum: int, allow_none: bool = False) -> int | None:
    """Validate that ``value`` is an int ``>= minimum`` (or None when allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        expected = f"an int >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def _num_samples(X: Any) -> int:
    """Number of rows of an array-like (``shape[0]`` if available, else ``len``)."""
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) > 0:
        return int(shape[0])
    try:
        return len(X)
    except TypeError as exc:
        raise ValueError(f"cannot infer the number of samples of {type(X).__name__}") from exc


class PurgedWalkForward:
    """Walk-forward splitter with purging and embargo.

    Rows are assumed to be in time order.  The last ``n_splits * test_size`` rows are cut
    into ``n_splits`` consecutive, adjacent, non-overlapping test folds.  The training set
    of every fold strictly precedes its test fold and is separated from it by a *purge*
    and an *embargo*::

        rows  0                                                                   n-1
              |------------------------------------------------------------------|
        fold  [........ train ........][ purge ][ embargo ][== test ==]( later folds )
              ^train_start   train_end^                    ^test_start  ^test_end
                                        <-purge-><-embargo->

    * **Purge.**  The label of training row ``i`` covers the window ``(i, i+purge]`` (for a
      forward return over ``h`` bars, ``purge = h``).  Rows whose window reaches the test
      fold are dropped: only ``i + purge < test_start`` survive.
    * **Embargo.**  A further ``embargo`` rows are dropped before the test fold, guarding
      against serial correlation of rolling features.  Training rows therefore satisfy
      ``i < test_start - purge - embargo``.
    * **Window.**  With ``train_size=None`` the training window expands from row 0; with
      an int it slides and keeps the last ``train_size`` eligible rows.

    Parameters
    ----------
    n_splits : int, default 5
        Number of folds, ``>= 1``.
    test_size : int or None, default None
        Rows per test fold, ``>= 1``.  ``None`` uses ``n_samples // (n_splits + 1)`` (as
        scikit-learn's ``TimeSeriesSplit``).
    train_size : int or None, default None
        Maximum number of training rows (sliding window).  ``None`` for an expanding
        window starting at row 0.
    purge : int, default 1
        Label horizon in rows, ``>= 0``; set it to the ``horizon`` of the labels.
    embargo : int, default 0
        Extra gap in rows between the purged training rows and the test fold, ``>= 0``.
    min_train_size : int, default 1
        Minimum number of training rows per fold, ``>= 1``; :meth:`split` raises if a
        fold would have fewer.

    Raises
    ------
    ValueError
        On invalid parameters (at construction), or from :meth:`split` /
        :meth:`describe` when there are too few samples for the requested folds.

    Notes
    -----
    Only past data is ever used for training (no "combinatorial" folds), so every fold
    mimics a live retrain: fit on ``[train_start, train_end]``, predict
    ``[test_start, test_end]``.  Indices are positions (like scikit-learn), not labels.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.arange(20).reshape(-1, 1)
    >>> cv = PurgedWalkForward(n_splits=3, purge=1, embargo=1)
    >>> cv
    PurgedWalkForward(n_splits=3, test_size=None, train_size=None, purge=1, embargo=1, \
min_train_size=1)
    >>> cv.get_n_splits(X)
    3
    >>> for train, test in cv.split(X):
    ...     print(train.tolist(), test.tolist())
    [0, 1, 2] [5, 6, 7, 8, 9]
    [0, 1, 2, 3, 4, 5, 6, 7] [10, 11, 12, 13, 14]
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12] [15, 16, 17, 18, 19]

    A sliding window of at most 4 training rows, with a 3-bar label horizon:

    >>> cv = PurgedWalkForward(n_splits=2, test_size=4, train_size=4, purge=3)
    >>> for train, test in cv.split(X):
    ...     print(train.tolist(), test.tolist())
    [5, 6, 7, 8] [12, 13, 14, 15]
    [9, 10, 11, 12] [16, 17, 18, 19]

    Fold boundaries (inclusive) for a run manifest:

    >>> cv.describe(20)[0]
    {'fold': 0, 'train_start': 5, 'train_end': 8, 'test_start': 12, 'test_end': 15, \
'n_train': 4, 'n_test': 4}
    """

    def __init__(
        self,
        n_splits: int = 5,
        test_size: int | None = None,
        train_size: int | None = None,
        purge: int = 1,
        embargo: int = 0,
        min_train_size: int = 1,
    ) -> None:
        self.n_splits = n_splits
        self.test_size = test_size
        self.train_size = train_size
        self.purge = purge
        self.embargo = embargo
        self.min_train_size = min_train_size
        self._checked_params()

    def _checked_params(self) -> tuple[int, int | None, int | None, int, int, int]:
        """Validate and return the parameters as plain ints."""
        n_splits = _check_int("n_splits", self.n_splits, 1)
        test_size = _check_int("test_size", self.test_size, 1, allow_none=True)
        train_size = _check_int("train_size", self.train_size, 1, allow_none=True)
        purge = _check_int("purge", self.purge, 0)
        embargo = _check_int("embargo", self.embargo, 0)
        min_train_size = _check_int("min_train_size", self.min_train_size, 1)
        assert n_splits is not None and purge is not None
        assert embargo is not None and min_train_size is not None
        return n_splits, test_size, train_size, purge, embargo, min_train_size

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n_splits={self.n_splits!r}, test_size={self.test_size!r}, "
            f"train_size={self.train_size!r}, purge={self.purge!r}, "
            f"embargo={self.embargo!r}, min_train_size={self.min_train_size!r})"
        )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Return the constructor parameters (scikit-learn convention).

        Parameters
        ----------
        deep : bool, default True
            Ignored; present for scikit-learn compatibility.

        Returns
        -------
        dict
            Parameter name to value.
        """
        return {
            "n_splits": self.n_splits,
            "test_size": self.test_size,
            "train_size": self.train_size,
            "purge": self.purge,
            "embargo": self.embargo,
            "min_train_size": self.min_train_size,
        }

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """Return the number of folds.

        Parameters
        ----------
        X, y, groups : object
            Ignored; present for scikit-learn compatibility.

        Returns
        -------
        int
            ``n_splits``.
        """
        return self._checked_params()[0]

    def _bounds(self, n_samples: int) -> list[tuple[int, int, int, int]]:
        """Half-open bounds ``(train_start, train_stop, test_start, test_stop)`` per fold."""
        n_splits, test_size, train_size, purge, embargo, min_train = self._checked_params()
        n = _check_int("n_samples", n_samples, 0)
        assert n is not None
        if test_size is None:
            test_size = n // (n_splits + 1)
            if test_size < 1:
                raise ValueError(
                    f"too few samples: n_samples={n} cannot be split into "
                    f"n_splits + 1 = {n_splits + 1} parts of at least one row"
                )
        first_test = n - n_splits * test_size
        if first_test < 1:
            raise ValueError(
                f"too few samples: n_splits * test_size = {n_splits * test_size} "
                f"test rows leave no training rows out of n_samples={n}"
            )
        bounds: list[tuple[int, int, int, int]] = []
        for fold in range(n_splits):
            test_start = first_test + fold * test_size
            train_stop = max(test_start - purge - embargo, 0)
            train_start = 0 if train_size is None else max(train_stop - train_size, 0)
            if train_stop - train_start < min_train:
                raise ValueError(
                    f"fold {fold} has {train_stop - train_start} training rows "
                    f"(test starts at row {test_start}, purge={purge}, embargo={embargo}), "
                    f"fewer than min_train_size={min_train}; use fewer splits, a smaller "
                    "test_size or more samples"
                )
            bounds.append((train_start, train_stop, test_start, test_start + test_size))
        return bounds

    def split(
        self, X: Any, y: Any = None, groups: Any = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Generate train/test row positions for each fold.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Samples in time order; only its length is used.
        y, groups : object
            Ignored; present for scikit-learn compatibility.

        Yields
        ------
        train : numpy.ndarray
            int64 positions of the training rows, ascending.
        test : numpy.ndarray
            int64 positions of the test rows, ascending.

        Raises
        ------
        ValueError
            If there are too few samples or a fold would have fewer than
            ``min_train_size`` training rows (raised before the first fold is yielded).
        """
        bounds = self._bounds(_num_samples(X))
        for train_start, train_stop, test_start, test_stop in bounds:
            yield (
                np.arange(train_start, train_stop, dtype=np.int64),
                np.arange(test_start, test_stop, dtype=np.int64),
            )

    def describe(self, n_samples: int) -> list[dict[str, int]]:
        """Describe the folds for ``n_samples`` rows (for run manifests).

        Parameters
        ----------
        n_samples : int
            Number of rows that will be split.

        Returns
        -------
        list of dict
            One dict per fold with int keys ``fold``, ``train_start``, ``train_end``,
            ``test_start``, ``test_end`` (inclusive positions), ``n_train`` and
            ``n_test``.

        Raises
        ------
        ValueError
            Under the same conditions as :meth:`split`.
        """
        return [
            {
                "fold": fold,
                "train_start": train_start,
                "train_end": train_stop - 1,
                "test_start": test_start,
                "test_end": test_stop - 1,
                "n_train": train_stop - train_start,
                "n_test": test_stop - test_start,
            }
            for fold, (train_start, train_stop, test_start, test_stop) in enumerate(
                self._bounds(n_samples)
            )
        ]
