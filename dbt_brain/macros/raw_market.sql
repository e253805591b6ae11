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
{% endmacro %}
