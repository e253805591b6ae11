"""flows.progress: a flow's mapped tasks log k/N as each one ends, in a real flow run."""

from __future__ import annotations

import logging
import time

import pytest
from prefect import flow, task

from flows.progress import wait_logging_progress

pytestmark = pytest.mark.slow


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))


@task(retries=0)
def _work(symbol: str, seconds: float) -> dict[str, object]:
    time.sleep(seconds)
    if symbol == "BAD/USDT":
        raise ValueError("no candles for BAD/USDT")
    return {"bars": int(seconds * 1000)}


def test_each_finished_task_logs_its_count_in_the_order_they_end(prefect_harness: None) -> None:
    handler = _Lines()
    logger = logging.getLogger("brain.test.progress")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    symbols = ["SLOW/USDT", "FAST/USDT", "BAD/USDT"]

    @flow(name="progress-probe")
    def probe() -> tuple[int, int]:
        futures = _work.map(symbols, [1.5, 0.1, 0.6])
        return wait_logging_progress(
            futures, symbols, logger, "versions", lambda r: f"{r['bars']} bars"
        )

    try:
        assert probe() == (2, 1)
    finally:
        logger.removeHandler(handler)
    levels = [lvl for lvl, _ in handler.lines]
    texts = [text for _, text in handler.lines]
    assert texts[0] == "1/3 versions: FAST/USDT (100 bars)"
    assert texts[1].startswith("2/3 versions: BAD/USDT Failed")
    assert "no candles for BAD/USDT" in texts[1]
    assert texts[2] == "3/3 versions: SLOW/USDT (1500 bars)"
    assert levels == [logging.INFO, logging.WARNING, logging.INFO]


def test_labels_must_match_the_futures() -> None:
    with pytest.raises(ValueError, match="2 futures but 1 labels"):
        wait_logging_progress([object(), object()], ["x"], logging.getLogger(), "x")  # type: ignore[list-item]
