"""Per-item progress of a flow's mapped tasks, logged as each one finishes.

A run of 100 symbols shows in the Prefect UI (and in ``brain train``'s log) as
``37/100 versions: SOL/USDT lightgbm (promoted, 8,760 bars)`` lines in the order the
tasks end, under any task runner (threads or Dask): the flow waits on the futures
here instead of on the whole list at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from prefect.futures import PrefectFuture, as_completed


def wait_logging_progress(
    futures: Sequence[PrefectFuture[Any]],
    labels: Sequence[str],
    logger: logging.Logger | logging.LoggerAdapter[Any],
    noun: str,
    detail: Callable[[Any], str] | None = None,
) -> tuple[int, int]:
    """Wait for every future, logging ``k/N noun: label (detail)`` as each one ends
    (a warning with the state's message for one that did not complete). Returns
    (completed, not completed)."""
    if len(futures) != len(labels):
        raise ValueError(f"{len(futures)} futures but {len(labels)} labels")
    label_of = {f.task_run_id: label for f, label in zip(futures, labels, strict=True)}
    total, good, bad = len(futures), 0, 0
    for done, fut in enumerate(as_completed(list(futures)), start=1):
        label = label_of[fut.task_run_id]
        fut.wait()  # as_completed yields on the run's end; the state is read after it
        state = fut.state
        if state.is_completed():
            good += 1
            extra = detail(fut.result()) if detail is not None else ""
            logger.info("%d/%d %s: %s%s", done, total, noun, label, f" ({extra})" if extra else "")
        else:
            bad += 1
            message = (state.message or "").splitlines()[0] if state.message else ""
            logger.warning("%d/%d %s: %s %s %s", done, total, noun, label, state.name, message)
    return good, bad
