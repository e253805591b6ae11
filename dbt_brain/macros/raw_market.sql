{#-
    Raw landing tables of the market-data collection (flow collect-market-data,
    brain_lib.market). Called from raw_schema_ddl() (macros/raw_schema.sql), in the same
    transaction and under the same advisory lock; the same migration rules apply (new
    columns at the end of the create AND in an `alter table ... add column if not
    exists`; bump var raw_schema_version).

    No CHECK constraints on values here on purpose: a row that breaks a domain rule
    (negative open interest, an unknown liquidation side) must land so that Great
    Expectations can flag it and copy it to quarantine (expectations/, brain_lib.quality);
    a constraint would turn it into a failed load and lose it. Only the natural keys and
    NOT NULLs are enforced.

    The collection's bookkeeping lives here too (end of the macro): raw.collection_streams
    (the state of each stream), raw.collection_runs (append-only log of stream runs) and
    raw.collection_gaps (holes the exchange did not fill).

    Timestamps are what the exchange stamped, in UTC. Point-in-time rule downstream
    (marts.fct_features_hourly): a value stamped at T may only feed bars that close at or
    after T.
-#}

{% macro raw_market_ddl() %}
-- funding rate history of perpetual swaps; ts = the funding time
create table if not exists raw.funding_rates (
    exchange      text             not null,
    symbol        text             not null,
    ts            timestamptz      not null,
    funding_rate  double precision not null,
    mark_price    double precision null,
    loaded_at     timestamptz      not null default now(),
    primary key (exchange, symbol, ts)
);

-- open interest history; period = the exchange's sampling period ('5m', '1h' ...);
-- ts = the sample's timestamp as the exchange gives it
create table if not exists raw.open_interest (
    exchange                text             not null,
    symbol                  text             not null,
    period                  text             not null,
    ts                      timestamptz      not null,
    open_interest_amount    double precision null,
    open_interest_value     double precision null,
    loaded_at               timestamptz      not null default now(),
    primary key (exchange, symbol, period, ts)
);

-- forced liquidations; side = the side of the liquidated POSITION ('long' when the
-- exchange force-sold a long); liquidation_key = the exchange's id when it gives one,
-- otherwise a sha256 of (ts, side, price, quantity): re-collecting a window adds nothing
create table if not exists raw.liquidations (
    exchange         text             not null,
    symbol           text             not null,
    liquidation_key  text             not null,
    ts               timestamptz      not null,
    side             text             null,
    price            double precision null,
    quantity         double precision null,
    notional         double precision null,
    loaded_at        timestamptz      not null default now(),
    primary key (exchange, symbol, liquidation_key)
);
create index if not exists liquidations_symbol_ts
    on raw.liquidations (exchange, symbol, ts);

-- scored sentiment items (brain_lib.sentiment sources); item_key = sha256 of
-- (source, ts, text), so re-reading a file adds nothing
create table if not exists raw.sentiment (
    source     text             not null,
    item_key   text             not null,
    ts         timestamptz      not null,
    symbol     text             null,
    text       text             null,
    score      double precision null,
    loaded_at  timestamptz      not null default now(),
    primary key (source, item_key)
);

-- ------------------------------------------------------------ collection bookkeeping
-- (brain_lib.market.collect). A stream is exchange x symbol x dataset x series, with
-- dataset in (ohlcv, funding, oi, liquidations) and series = the candle timeframe
-- (ohlcv), the sampling period (oi) or '' (funding, liquidations).

-- the latest state of every stream; upserted in the transaction of each page it writes
-- and at the end of each run. status: running, ok, unsupported, failed
create table if not exists raw.collection_streams (
    exchange     text        not null,
    symbol       text        not null,
    dataset      text        not null,
    series       text        not null default '',
    status       text        not null,
    message      text        null,
    last_ts      timestamptz null,
    last_run_id  text        null,
    updated_at   timestamptz not null default now(),
    primary key (exchange, symbol, dataset, series)
);

-- one row per stream per collection run; append-only
create table if not exists raw.collection_runs (
    collection_run_id  bigint generated always as identity primary key,
    run_id             text             null,
    exchange           text             not null,
    symbol             text             not null,
    dataset            text             not null,
    series             text             not null default '',
    status             text             not null,
    message            text             null,
    new_rows           bigint           not null default 0,
    unchanged_rows     bigint           not null default 0,
    pages              integer          not null default 0,
    requests           integer          not null default 0,
    retries            integer          not null default 0,
    gaps               integer          not null default 0,
    first_ts           timestamptz      null,
    last_ts            timestamptz      null,
    lag_seconds        double precision null,
    started_at         timestamptz      not null,
    finished_at        timestamptz      not null default now()
);
create index if not exists collection_runs_stream
    on raw.collection_runs (exchange, symbol, dataset, series, started_at);
create or replace trigger collection_runs_append_only
    before update or delete on raw.collection_runs
    for each row execute function raw.forbid_change('collection runs');
create or replace trigger collection_runs_no_truncate
    before truncate on raw.collection_runs
    for each statement execute function raw.forbid_change('collection runs');

-- holes the exchange did not fill: last_before = the last stamp present before the
-- hole, first_after = the first one after it; missing_rows = the rows expected in
-- between (fixed-step series), NULL when unknown. Written with the page that revealed
-- it; the key makes re-detection a no-op.
create table if not exists raw.collection_gaps (
    exchange      text        not null,
    symbol        text        not null,
    dataset       text        not null,
    series        text        not null default '',
    last_before   timestamptz not null,
    first_after   timestamptz not null,
    missing_rows  integer     null,
    run_id        text        null,
    detected_at   timestamptz not null default now(),
    primary key (exchange, symbol, dataset, series, last_before)
);
-- the websocket listeners (brain_lib.market.listen, `brain listen liquidations`): one
-- row per stream (exchange x symbol x dataset) with its listener's latest beat, upserted
-- every few seconds and when the state changes. state: listening, reconnecting,
-- stopped, failed; connected: whether the websocket was up at beat_at; the counts are
-- the listener run's so far (messages = liquidations received for the stream)
create table if not exists raw.listener_heartbeats (
    exchange     text        not null,
    symbol       text        not null,
    dataset      text        not null,
    listener_id  text        not null,
    run_id       text        null,
    host         text        not null,
    pid          integer     not null,
    started_at   timestamptz not null,
    beat_at      timestamptz not null,
    state        text        not null,
    connected    boolean     not null,
    messages     bigint      not null default 0,
    new_rows     bigint      not null default 0,
    unchanged_rows bigint    not null default 0,
    rejected     bigint      not null default 0,
    reconnects   integer     not null default 0,
    last_ts      timestamptz null,
    message      text        null,
    primary key (exchange, symbol, dataset)
);

-- messages a listener could not turn into rows (text that is not JSON, JSON cut short,
-- a liquidation without a market or a time): kept with the reason, never dropped.
-- frame = the message as received, printable characters only and at most 4,000 of
-- them; frame_sha256 of the whole message. Append-only.
create table if not exists raw.quarantine_messages (
    message_id    bigint generated always as identity primary key,
    exchange      text        not null,
    dataset       text        not null,
    symbol        text        null,
    reason        text        not null,
    frame         text        not null,
    frame_sha256  text        not null,
    frame_bytes   integer     not null,
    run_id        text        null,
    received_at   timestamptz not null
);
create or replace trigger quarantine_messages_append_only
    before update or delete on raw.quarantine_messages
    for each row execute function raw.forbid_change('quarantined messages');
create or replace trigger quarantine_messages_no_truncate
    before truncate on raw.quarantine_messages
    for each statement execute function raw.forbid_change('quarantined messages');

-- revisions of candles: a row that arrived for a stored candle's key with other values
-- (an exchange revising its last bar, a user correcting a file). Append-only: one row
-- per arrival with the stored and the arriving values and what was done with it.
-- decision 'applied': raw.ohlcv now holds the new values (loaded_at = the revision);
-- 'refused': raw.ohlcv kept the stored ones. Rule (brain_lib.warehouse.copy_ohlcv): a
-- stored candle is provisional while it was loaded before the end of the bar after it
-- (loaded_at < ts + 2 bars: stored while open or just closed) and a revision of it is
-- applied; a revision of a settled candle is refused unless the writer asks to apply it
-- (`brain ingest ohlcv --revise`).
create table if not exists raw.ohlcv_revisions (
    revision_id    bigint generated always as identity primary key,
    exchange       text             not null,
    symbol         text             not null,
    timeframe      text             not null,
    ts             timestamptz      not null,
    old_open       double precision not null,
    old_high       double precision not null,
    old_low        double precision not null,
    old_close      double precision not null,
    old_volume     double precision not null,
    old_loaded_at  timestamptz      not null,
    new_open       double precision not null,
    new_high       double precision not null,
    new_low        double precision not null,
    new_close      double precision not null,
    new_volume     double precision not null,
    decision       text             not null check (decision in ('applied', 'refused')),
    rule           text             not null,
    source         text             null,
    revised_at     timestamptz      not null default now()
);
create index if not exists ohlcv_revisions_candle
    on raw.ohlcv_revisions (exchange, symbol, timeframe, ts);
create or replace trigger ohlcv_revisions_append_only
    before update or delete on raw.ohlcv_revisions
    for each row execute function raw.forbid_change('candle revisions');
create or replace trigger ohlcv_revisions_no_truncate
    before truncate on raw.ohlcv_revisions
    for each statement execute function raw.forbid_change('candle revisions');
{% endmacro %}
