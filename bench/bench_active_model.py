"""Benchmark: ``BrainLibrary.get_active_model`` cold versus warm.

Cold: a new ``BrainLibrary`` per call, so every call reads the champion, fetches the
artifact, verifies its sha256 and parses the LightGBM model. Warm: one library, the
model comes from its cache; the call still reads the champion from the warehouse (a
promotion must be seen at once). Prints medians and the ratio.

    .venv/bin/python bench/bench_active_model.py [--calls 200] [--trees 200]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from brain_lib.brain import BrainLibrary
from brain_lib.dbt import ensure_raw_schema
from brain_lib.market import SyntheticMarket
from brain_lib.registry import register_version
from brain_lib.training import TrainingConfig, train_symbol
from brain_lib.warehouse import EmbeddedWarehouse, connect

REPO = Path(__file__).resolve().parent.parent


def _median_ms(fn, calls: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--trees", type=int, default=200)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="brain-bench-active-"))
    warehouse = EmbeddedWarehouse(tmp / "home")
    try:
        dsn = warehouse.start()
        ensure_raw_schema(dsn, project_dir=REPO / "dbt_brain", state_dir=tmp / "dbt")
        candles = SyntheticMarket(seed=1).candles("BTC/USDT", 24 * 120).set_index("ts")
        config = TrainingConfig(params={"num_boost_round": args.trees}, n_splits=3)
        result = train_symbol(
            candles.drop(columns="regime"), exchange="synthetic", symbol="BTC/USDT", config=config
        )
        with connect(dsn) as conn:
            version, _ = register_version(
                conn,
                result,
                artifact_root=str(tmp / "artifacts"),
                candles=candles.drop(columns="regime"),
                config=config,
            )
        size_kb = Path(version.artifact_uri).stat().st_size / 1024

        cold = _median_ms(lambda: BrainLibrary(dsn=dsn).get_active_model("BTC/USDT"), args.calls)
        library = BrainLibrary(dsn=dsn)
        library.get_active_model("BTC/USDT")
        warm = _median_ms(lambda: library.get_active_model("BTC/USDT"), args.calls)
        print(f"artifact: LightGBM text, {args.trees} trees, {size_kb:.0f} KiB")
        print(f"get_active_model cold (connect, fetch, sha256, parse): {cold:8.2f} ms median")
        print(f"get_active_model warm (open connection, cached model):  {warm:8.2f} ms median")
        print(f"({args.calls} calls each)")
        print(f"cold / warm = {cold / warm:.1f}x")
    finally:
        warehouse.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
