"""The liquidation listener: ccxt.pro (unmodified) against the replay exchange's websocket
streams, landing in a real PostgreSQL.

Each test starts its own replay, whose streams' clock runs from two hours before its
fixed clock at ``SPEED`` x the wall clock and stops at the clock: the streams fall quiet
after about a second, so every liquidation sent has arrived when the listener stops,
and the warehouse can be compared with the replay's log of what it sent.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from flow_artifacts import flow_run_artifact

from brain_lib.errors import UnknownExchangeError, UnknownSymbolError
from brain_lib.market.listen import (
    LiquidationListener,
    ListenerBusyError,
    ListenReport,
    listen_liquidations,
)
from brain_lib.market.replay import ReplayConfig, ReplayServer, SentLiquidation

NOW = "2025-03-01T12:00:00Z"
WS_START = "2025-03-01T10:00:00Z"
SPEED = 7200.0  # two hours of market a second
SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT"]
LISTEN_S = 2.5  # the flow's window and the busy-listener test


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    config = ReplayConfig(now=NOW, ws_start=WS_START, ws_speed=SPEED, liquidation_rate=60)
    with ReplayServer(config) as server:
        yield server


def _listen(dsn: str, replay: ReplayServer, exchange: str, **options: object) -> ListenReport:
    """Listen until the replay's streams have sent everything and a second has passed
    for it to arrive (at most a minute), then stop the listener."""
    options.setdefault("check_s", 0)
    listener = LiquidationListener(dsn, exchange, SYMBOLS, replay_url=replay.url, **options)
    runner = threading.Thread(target=listener.run, args=(60.0,))
    runner.start()
    deadline = time.monotonic() + 60
    while not replay.ws.finished and runner.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    listener.stop()
    runner.join()
    return listener.report


def _stored(dsn: str, exchange: str) -> collections.Counter[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            """
            select symbol, (extract(epoch from ts) * 1000)::bigint, side, price, quantity
            from raw.liquidations where exchange = %s
            """,
            (exchange,),
        ).fetchall()
    return collections.Counter((s, int(t), side, p, round(q, 9)) for s, t, side, p, q in rows)


def _sent(replay: ReplayServer, exchange: str) -> collections.Counter[tuple[object, ...]]:
    wanted = {s.split("/")[0] for s in SYMBOLS}
    rows: list[SentLiquidation] = [
        s for s in replay.ws.sent_to(exchange) if s.copy == 0 and s.base in wanted
    ]
    return collections.Counter(
        (f"{s.base}/USDT:USDT", s.ts, s.side, s.price, round(s.quantity, 9)) for s in rows
    )


def _one(dsn: str, sql: str, *args: object) -> tuple[object, ...]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql, args).fetchone()
    assert row is not None
    return tuple(row)


@pytest.mark.parametrize("exchange", ["binance", "bybit", "okx"])
def test_lands_exactly_the_liquidations_the_replay_sent(
    fresh_warehouse: str, replay: ReplayServer, exchange: str
) -> None:
    report = _listen(fresh_warehouse, replay, exchange, check_s=30.0)
    sent = _sent(replay, exchange)
    assert sum(sent.values()) > 50, "the replay sent too little to compare"
    assert _stored(fresh_warehouse, exchange) == sent
    assert report.status == "ok" and report.rejected == 0
    assert report.new_rows == sum(sent.values())
    # both sides occur, and a stored long is what the exchange called a long
    assert {key[2] for key in sent} == {"long", "short"}
    state, connected, new_rows = _one(
        fresh_warehouse,
        "select state, connected, sum(new_rows) over () from raw.listener_heartbeats "
        "where exchange = %s limit 1",
        exchange,
    )
    assert (state, connected, new_rows) == ("stopped", False, report.new_rows)
    (runs,) = _one(
        fresh_warehouse,
        "select count(*) from raw.collection_runs where run_id = %s and dataset = 'liquidations'",
        report.run_id,
    )
    assert runs == len(SYMBOLS)
    # the raw.liquidations suite ran on what landed, under the listener's run id
    (suites,) = _one(
        fresh_warehouse,
        "select count(distinct suite) from raw.data_quality_results where run_id = %s",
        report.run_id,
    )
    assert suites == 1 and report.checks and report.checks[-1]["success"]


@pytest.mark.parametrize("exchange", ["binance", "bybit"])  # bybit: a watcher per symbol
def test_a_dropped_connection_resumes_with_a_recorded_gap_and_no_duplicate(
    fresh_warehouse: str, replay: ReplayServer, exchange: str
) -> None:
    rule = replay.ws.add_fault("drop", exchange, after=20)
    report = _listen(fresh_warehouse, replay, exchange, backoff_s=(0.05, 0.2))
    assert rule.fired == 1 and replay.ws.connections >= 2
    assert report.reconnects == 1  # one lost connection, however many watchers it carried
    sent = _sent(replay, exchange)
    stored = _stored(fresh_warehouse, exchange)
    assert stored == sent and max(stored.values()) == 1
    gaps = _one(
        fresh_warehouse,
        "select count(*), min(first_after - last_before) from raw.collection_gaps "
        "where exchange = %s and dataset = 'liquidations' and run_id = %s",
        exchange,
        report.run_id,
    )
    assert gaps[0] == len(SYMBOLS)  # one hole per stream of the dropped connection
    assert gaps[1].total_seconds() > 0


def test_malformed_frames_are_quarantined_and_the_stream_goes_on(
    fresh_warehouse: str, replay: ReplayServer
) -> None:
    for n, kind in enumerate(("not_json", "truncated", "bad_values")):
        # okx's channel carries every swap: break one of ours
        replay.ws.add_fault(kind, "okx", after=3 + 3 * n, base="ETH")
    report = _listen(fresh_warehouse, replay, "okx", check_s=30.0)
    assert report.status == "ok" and report.rejected == 2
    with psycopg.connect(fresh_warehouse) as conn:
        reasons = [
            r[0]
            for r in conn.execute(
                "select reason from raw.quarantine_messages where run_id = %s order by 1",
                (report.run_id,),
            )
        ]
        flagged = conn.execute(
            "select distinct expectation from raw.quarantine_liquidations "
            "where exchange = 'okx' order by 1"
        ).fetchall()
    assert reasons[0] == "not JSON" and reasons[1].startswith("not valid JSON")
    # the liquidation whose numbers are not numbers landed and the suite quarantined it
    assert ("expect_liquidation_quantity_positive",) in flagged, report.checks
    stored = _stored(fresh_warehouse, "okx")
    sent = _sent(replay, "okx")
    assert sent - stored == collections.Counter()  # every good one landed, after the faults too
    assert sum(stored.values()) - sum(sent.values()) == 1  # plus the broken one


def test_a_duplicate_frame_adds_nothing(fresh_warehouse: str, replay: ReplayServer) -> None:
    replay.ws.add_fault("duplicate", "bybit", after=5, times=3)
    report = _listen(fresh_warehouse, replay, "bybit")
    copies = [s for s in replay.ws.sent_to("bybit") if s.copy]
    assert copies
    assert _stored(fresh_warehouse, "bybit") == _sent(replay, "bybit")
    assert report.unchanged_rows == len(copies)


def test_a_second_listener_for_the_same_stream_is_refused(
    fresh_warehouse: str, replay: ReplayServer
) -> None:
    first = LiquidationListener(
        fresh_warehouse, "binance", SYMBOLS, replay_url=replay.url, check_s=None
    )
    runner = threading.Thread(target=first.run, args=(LISTEN_S,))
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while not first._holding and time.monotonic() < deadline:
            time.sleep(0.02)
        assert first._holding
        with pytest.raises(ListenerBusyError, match=r"already have a listener .*listener "):
            listen_liquidations(
                fresh_warehouse, "binance", ["ETH/USDT"], duration_s=1, replay_url=replay.url
            )
    finally:
        runner.join()
    # the refused one wrote nothing: one heartbeat per stream, the first listener's
    with psycopg.connect(fresh_warehouse) as conn:
        ids = conn.execute("select distinct listener_id from raw.listener_heartbeats").fetchall()
    assert ids == [(first.report.listener_id,)]
    assert _stored(fresh_warehouse, "binance") == _sent(replay, "binance")


def test_bad_requests_are_refused_in_one_line_before_anything_is_written(
    fresh_warehouse: str, replay: ReplayServer
) -> None:
    with pytest.raises(UnknownExchangeError, match="kraken publishes no liquidations"):
        LiquidationListener(fresh_warehouse, "kraken", SYMBOLS, replay_url=replay.url)
    with pytest.raises(UnknownExchangeError, match="unknown exchange 'nope'"):
        LiquidationListener(fresh_warehouse, "nope", SYMBOLS, replay_url=replay.url)
    with pytest.raises(UnknownSymbolError, match="unknown symbol 'DOGE/USDT:USDT' on bybit"):
        listen_liquidations(
            fresh_warehouse, "bybit", ["DOGE/USDT:USDT"], duration_s=1, replay_url=replay.url
        )
    (n,) = _one(fresh_warehouse, "select count(*) from raw.listener_heartbeats")
    assert n == 0


def test_the_flow_listens_for_its_window_and_publishes_a_summary(
    fresh_warehouse: str,
    replay: ReplayServer,
    prefect_harness: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.listen_liquidations import ARTIFACT_KEY, listen_liquidations_flow

    monkeypatch.setenv("BRAIN_DATABASE_URL", fresh_warehouse)
    monkeypatch.setenv("BRAIN_HOME", str(tmp_path / "home"))
    state = listen_liquidations_flow(
        exchange="okx",
        symbols=SYMBOLS,
        minutes=LISTEN_S / 60,
        replay=replay.url,
        return_state=True,
    )
    assert state.is_completed(), state.message
    rows = state.result()
    assert {r["symbol"] for r in rows} == set(SYMBOLS)
    assert sum(r["new_rows"] for r in rows) == sum(_sent(replay, "okx").values()) > 0

    artifact = flow_run_artifact(ARTIFACT_KEY, state.state_details.flow_run_id)
    assert artifact is not None and "| BTC/USDT:USDT |" in str(artifact.data)
