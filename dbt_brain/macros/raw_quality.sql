{#-
    Raw tables of data-quality monitoring (brain_lib.quality, expectations/). Called from
    raw_schema_ddl() (macros/raw_schema.sql), in the same transaction and under the same
    advisory lock; same migration rules (new columns at the END of the create AND in an
    `alter table ... add column if not exists`; bump var raw_schema_version).

    raw.data_quality_results  one row per expectation of each validation (a GX checkpoint
                              run over one batch of one raw table); append-only.
    raw.quarantine_<table>    copies of the raw rows that failed a row-level expectation,
                              one per (raw row, expectation), with the reason: the raw
                              row's columns first, then the quarantine columns. The
                              primary key is the raw table's key + expectation, so
                              quarantining the same batch again adds nothing. Append-only:
                              a quarantined row is never changed or deleted, and the raw
                              row stays where it is; training leaves out every raw row
                              that has a quarantine copy (brain_lib.quality).
-#}

{% macro raw_quality_ddl() %}
-- one row per expectation of each validation run (Great Expectations checkpoint);
-- append-only. severity: 'blocking' keeps a symbol's window out of training, 'warning'
-- does not. batch_start / batch_end: the range validated (requested, else observed).
create table if not exists raw.data_quality_results (
    result_id          bigint generated always as identity primary key,
    run_id             text             not null,
    suite              text             not null,
    table_name         text             not null,
    expectation        text             not null,
    column_name        text             null,
    severity           text             not null default 'blocking',
    success            boolean          not null,
    observed_value     jsonb            null,
    unexpected_count   bigint           null,
    element_count      bigint           null,
    exchange           text             null,
    symbol             text             null,
    batch_start        timestamptz      null,
    batch_end          timestamptz      null,
    validated_at       timestamptz      not null default now(),
    timeframe          text             null,
    description        text             null,
    exception_message  text             null
);
alter table raw.data_quality_results
    add column if not exists timeframe text null;
alter table raw.data_quality_results
    add column if not exists description text null;
alter table raw.data_quality_results
    add column if not exists exception_message text null;
create index if not exists data_quality_results_validated_at
    on raw.data_quality_results (validated_at);

create or replace trigger data_quality_results_append_only
    before update or delete on raw.data_quality_results
    for each row execute function raw.forbid_change('quality results');
create or replace trigger data_quality_results_no_truncate
    before truncate on raw.data_quality_results
    for each statement execute function raw.forbid_change('quality results');

-- quarantined candles (raw.ohlcv)
create table if not exists raw.quarantine_ohlcv (
    exchange        text             not null,
    symbol          text             not null,
    timeframe       text             not null,
    ts              timestamptz      not null,
    open            double precision null,
    high            double precision null,
    low             double precision null,
    close           double precision null,
    volume          double precision null,
    loaded_at       timestamptz      null,
    expectation     text             not null,
    reason          text             not null,
    severity        text             not null,
    run_id          text             not null,
    quarantined_at  timestamptz      not null default now(),
    landed          boolean          not null default true,
    source          text             null,
    source_row      bigint           null,
    primary key (exchange, symbol, timeframe, ts, expectation, landed)
);
-- landed: true for a copy of a row of raw.ohlcv (the gate's), false for a row refused at
-- the door (`brain ingest ohlcv`): it never reached raw.ohlcv, and it does not keep a
-- later, valid candle of the same key out of training. source / source_row: the file
-- and its row (1 = the first after the header) of a row refused at the door.
alter table raw.quarantine_ohlcv
    add column if not exists landed boolean not null default true;
alter table raw.quarantine_ohlcv
    add column if not exists source text null;
alter table raw.quarantine_ohlcv
    add column if not exists source_row bigint null;
do $migrate$
begin
    -- v7: the key gained `landed`, so a door copy and a gate copy of one key coexist
    if not exists (
        select 1 from information_schema.key_column_usage
        where table_schema = 'raw' and table_name = 'quarantine_ohlcv'
          and constraint_name = 'quarantine_ohlcv_pkey' and column_name = 'landed'
    ) then
        alter table raw.quarantine_ohlcv drop constraint quarantine_ohlcv_pkey;
        alter table raw.quarantine_ohlcv
            add primary key (exchange, symbol, timeframe, ts, expectation, landed);
    end if;
end
$migrate$;

-- the door's staging area: a batch of outside candles (`brain ingest ohlcv`) waits here,
-- committed, while Great Expectations runs the raw.ohlcv suite on it through its own
-- connection; then, in one transaction, its valid rows go to raw.ohlcv, its invalid
-- ones to raw.quarantine_ohlcv (landed = false) and the batch is deleted. Prices may
-- be NaN or infinite here: the suite is what names them. A batch left by a killed
-- process is removed by the next ingest after a day (brain_lib.door).
create table if not exists raw.ohlcv_landing (
    batch_id    text             not null,
    source_row  bigint           not null,
    exchange    text             not null,
    symbol      text             not null,
    timeframe   text             not null,
    ts          timestamptz      not null,
    open        double precision null,
    high        double precision null,
    low         double precision null,
    close       double precision null,
    volume      double precision null,
    loaded_at   timestamptz      not null default now(),
    primary key (batch_id, source_row)
);

-- quarantined funding rates (raw.funding_rates)
create table if not exists raw.quarantine_funding_rates (
    exchange        text             not null,
    symbol          text             not null,
    ts              timestamptz      not null,
    funding_rate    double precision null,
    mark_price      double precision null,
    loaded_at       timestamptz      null,
    expectation     text             not null,
    reason          text             not null,
    severity        text             not null,
    run_id          text             not null,
    quarantined_at  timestamptz      not null default now(),
    primary key (exchange, symbol, ts, expectation)
);

-- quarantined open interest samples (raw.open_interest)
create table if not exists raw.quarantine_open_interest (
    exchange              text             not null,
    symbol                text             not null,
    period                text             not null,
    ts                    timestamptz      not null,
    open_interest_amount  double precision null,
    open_interest_value   double precision null,
    loaded_at             timestamptz      null,
    expectation           text             not null,
    reason                text             not null,
    severity              text             not null,
    run_id                text             not null,
    quarantined_at        timestamptz      not null default now(),
    primary key (exchange, symbol, period, ts, expectation)
);

-- quarantined liquidations (raw.liquidations)
create table if not exists raw.quarantine_liquidations (
    exchange         text             not null,
    symbol           text             not null,
    liquidation_key  text             not null,
    ts               timestamptz      not null,
    side             text             null,
    price            double precision null,
    quantity         double precision null,
    notional         double precision null,
    loaded_at        timestamptz      null,
    expectation      text             not null,
    reason           text             not null,
    severity         text             not null,
    run_id           text             not null,
    quarantined_at   timestamptz      not null default now(),
    primary key (exchange, symbol, liquidation_key, expectation)
);

{% for table in ['ohlcv', 'funding_rates', 'open_interest', 'liquidations'] %}
create or replace trigger quarantine_{{ table }}_append_only
    before update or delete on raw.quarantine_{{ table }}
    for each row execute function raw.forbid_change('quarantined rows');
create or replace trigger quarantine_{{ table }}_no_truncate
    before truncate on raw.quarantine_{{ table }}
    for each statement execute function raw.forbid_change('quarantined rows');
{% endfor %}
{% endmacro %}
