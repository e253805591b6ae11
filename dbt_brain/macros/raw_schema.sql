{#-
    The raw landing tables: the ONE definition of what Python writes into.

    raw_schema_ddl()      returns the DDL (idempotent: `if not exists` everywhere).
    create_raw_tables()   runs it and commits: `dbt run-operation create_raw_tables`.

    dbt_project.yml also runs raw_schema_ddl() as an on-run-start hook, so every
    `dbt build` / `dbt run` / `dbt test` first makes sure the tables exist.

    Columns are documented (and tested) as the `raw` source in
    models/staging/_raw__sources.yml. Changing a column here is a migration: existing
    warehouses keep the old table (`create table if not exists`), so add an explicit
    `alter table` beside the create when a column changes.
-#}

{% macro raw_schema_ddl() %}
create schema if not exists raw;

-- candles, one row per bar; ts is the bar's open time
create table if not exists raw.ohlcv (
    exchange    text             not null,
    symbol      text             not null,
    timeframe   text             not null,
    ts          timestamptz      not null,
    open        double precision not null,
    high        double precision not null,
    low         double precision not null,
    close       double precision not null,
    volume      double precision not null,
    loaded_at   timestamptz      not null default now(),
    primary key (exchange, symbol, timeframe, ts)
);

-- one row per trained model version; written once, never updated
create table if not exists raw.model_versions (
    version_id        text        primary key,
    exchange          text        not null,
    symbol            text        not null,
    timeframe         text        not null,
    model_type        text        not null,
    created_at        timestamptz not null default now(),
    run_id            text        null,
    manifest          jsonb       not null,
    artifact_uri      text        not null,
    artifact_sha256   text        not null check (length(artifact_sha256) = 64),
    feature_set_hash  text        not null,
    train_start       timestamptz not null,
    train_end         timestamptz not null,
    n_rows            integer     not null,
    loaded_at         timestamptz not null default now()
);

-- metrics of a version, long format; value NULL = undefined, 'Infinity' allowed
create table if not exists raw.model_metrics (
    version_id    text             not null references raw.model_versions (version_id),
    scope         text             not null default 'oos',
    metric        text             not null,
    value         double precision null,
    window_start  timestamptz,
    window_end    timestamptz,
    computed_at   timestamptz      not null default now(),
    primary key (version_id, scope, metric)
);

-- promotions and rollbacks of champions
create table if not exists raw.model_events (
    event_id             bigint generated always as identity primary key,
    event_type           text not null
        check (event_type in ('promotion', 'rollback', 'manual_promotion', 'manual_rollback')),
    exchange             text,
    symbol               text not null,
    timeframe            text,
    model_type           text not null,
    version_id           text null,
    previous_version_id  text null,
    champion_score       double precision,
    challenger_score     double precision,
    degradation          double precision,
    threshold            double precision,
    reason               text,
    run_id               text,
    created_at           timestamptz not null default now()
);
{% endmacro %}


{% macro create_raw_tables() %}
    {% call statement('create_raw_tables', auto_begin=True) %}
        {{ raw_schema_ddl() }}
    {% endcall %}
    {% do adapter.commit() %}
    {{ log("raw tables ensured: raw.ohlcv, raw.model_versions, raw.model_metrics, raw.model_events", info=True) }}
{% endmacro %}
