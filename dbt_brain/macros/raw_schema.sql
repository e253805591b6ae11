{#-
    The raw landing tables: the ONE definition of what Python writes into.

    raw_schema_ddl()      returns the DDL of the raw tables (idempotent: `if not
                          exists` / `create or replace` everywhere).
    create_raw_tables()   runs it, and composite_score_ddl() (macros/composite_score.sql,
                          the brain.* score functions), and commits:
                          `dbt run-operation create_raw_tables` makes everything Python needs.

    dbt_project.yml also runs both as on-run-start hooks, so every `dbt build` /
    `dbt run` / `dbt test` first makes sure the tables and functions exist and are
    current. Requires PostgreSQL 14+ (`create or replace trigger`).

    Columns are documented (and tested) as the `raw` source in
    models/staging/_raw__sources.yml. Changing a column here is a migration: an existing
    warehouse keeps its old table (`create table if not exists`), so every column added
    after the first release is ALSO added by an `alter table ... add column if not
    exists` below its create. New columns go at the END of the create, so a fresh and an
    upgraded warehouse have the same column order.

    Append-only: raw.model_versions, raw.model_metrics, raw.model_events (and
    raw.model_selections, the selector's decisions) are never
    changed once written; a trigger raises on update, delete and truncate (SQLSTATE
    P0001, "<table> is append-only: ..."). A version is replaced by registering a new
    one; a champion moves by a new event. raw.model_champions is the one table that is
    updated: the "online pointer", upserted on every champion change.
-#}

{% macro raw_schema_ddl() %}
-- Concurrent dbt runs each run this hook: the second waits for the first here instead
-- of racing it on the catalog. A lock wait of more than a minute (a long transaction
-- on a raw table) fails the run instead of queueing every reader of the table behind it.
select pg_advisory_xact_lock(hashtext('dbt_brain.raw_schema_ddl'));
set local lock_timeout = '1min';

create schema if not exists raw;

-- raises on any change to an append-only table (see the triggers below)
create or replace function raw.forbid_change()
    returns trigger
    language plpgsql
as $$
begin
    raise exception '%.% is append-only: % are never changed',
        tg_table_schema, tg_table_name, coalesce(tg_argv[0], 'rows')
        using errcode = 'P0001',
              hint = 'write a new row instead (a new version, a new event)';
end;
$$;

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

-- one row per trained model version; append-only
create table if not exists raw.model_versions (
    version_id             text        primary key,
    exchange               text        not null,
    symbol                 text        not null,
    timeframe              text        not null,
    model_type             text        not null,
    created_at             timestamptz not null default now(),
    run_id                 text        null,
    manifest               jsonb       not null,
    artifact_uri           text        not null,
    artifact_sha256        text        not null check (length(artifact_sha256) = 64),
    feature_set_hash       text        not null,
    train_start            timestamptz not null,
    train_end              timestamptz not null,
    n_rows                 integer     not null,
    loaded_at              timestamptz not null default now(),
    code_version           text        null,
    challenged_version_id  text        null references raw.model_versions (version_id)
);
alter table raw.model_versions
    add column if not exists code_version text null;
alter table raw.model_versions
    add column if not exists challenged_version_id text null
        references raw.model_versions (version_id);

create or replace trigger model_versions_append_only
    before update or delete on raw.model_versions
    for each row execute function raw.forbid_change('versions');
create or replace trigger model_versions_no_truncate
    before truncate on raw.model_versions
    for each statement execute function raw.forbid_change('versions');

-- metrics of a version, long format; value NULL = undefined, 'Infinity' allowed;
-- append-only (written with the version, in the same transaction)
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

create or replace trigger model_metrics_append_only
    before update or delete on raw.model_metrics
    for each row execute function raw.forbid_change('metrics');
create or replace trigger model_metrics_no_truncate
    before truncate on raw.model_metrics
    for each statement execute function raw.forbid_change('metrics');

-- the log of champion decisions per (exchange, symbol, timeframe, model_type);
-- append-only. Semantics of each event_type: models/staging/_raw__sources.yml.
create table if not exists raw.model_events (
    event_id             bigint generated always as identity primary key,
    event_type           text not null
        constraint model_events_event_type_check
        check (event_type in ('promotion', 'rollback', 'manual_promotion', 'manual_rollback',
                              'champion_unservable')),
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
    created_at           timestamptz not null default now(),
    details              jsonb null
);
alter table raw.model_events
    add column if not exists details jsonb null;
do $migrate$
begin
    -- v7: event_type gained 'champion_unservable' (a judgement found the champion's
    -- artifact unloadable; brain_lib.registry). Replaced only when it lacks the value,
    -- so a current warehouse is not locked and re-checked on every run.
    if not exists (
        select 1 from pg_constraint
        where conrelid = 'raw.model_events'::regclass
          and conname = 'model_events_event_type_check'
          and pg_get_constraintdef(oid) like '%champion_unservable%'
    ) then
        alter table raw.model_events drop constraint if exists model_events_event_type_check;
        alter table raw.model_events add constraint model_events_event_type_check
            check (event_type in ('promotion', 'rollback', 'manual_promotion',
                                  'manual_rollback', 'champion_unservable'));
    end if;
end
$migrate$;

create or replace trigger model_events_append_only
    before update or delete on raw.model_events
    for each row execute function raw.forbid_change('events');
create or replace trigger model_events_no_truncate
    before truncate on raw.model_events
    for each statement execute function raw.forbid_change('events');

-- the online pointer: the current champion of each (exchange, symbol, timeframe,
-- model_type). The primary key makes "exactly one champion" a database rule. Upserted
-- (insert ... on conflict do update) in the transaction that writes the event which
-- made the version champion: promotion, manual_promotion, manual_rollback or
-- champion_unservable (which deletes the row when it leaves no champion).
create table if not exists raw.model_champions (
    exchange    text        not null,
    symbol      text        not null,
    timeframe   text        not null,
    model_type  text        not null,
    version_id  text        not null references raw.model_versions (version_id),
    since       timestamptz not null default now(),
    event_id    bigint      not null references raw.model_events (event_id),
    primary key (exchange, symbol, timeframe, model_type)
);

-- feature importance of a version: one row per (method, feature) of each computation.
-- kind 'training': computed when the version was trained, in the same transaction as
-- the version; kind 'nightly': recomputed later on recent data. A feature left out
-- (constant in the window) has importance NULL and skipped_reason set; a whole
-- method skipped (too few rows, no explainer) is one row with feature '*'.
create table if not exists raw.feature_importance (
    version_id      text             not null references raw.model_versions (version_id),
    kind            text             not null check (kind in ('training', 'nightly')),
    method          text             not null check (method in ('shap', 'permutation', 'correlation')),
    feature         text             not null,
    importance      double precision null,
    normalised      double precision null,
    rank            integer          null,
    skipped_reason  text             null,
    window_start    timestamptz      null,
    window_end      timestamptz      null,
    n_rows          integer          not null,
    computed_at     timestamptz      not null default now(),
    primary key (version_id, kind, method, feature, computed_at)
);
create or replace trigger feature_importance_append_only
    before update or delete on raw.feature_importance
    for each row execute function raw.forbid_change('importance rows');
create or replace trigger feature_importance_no_truncate
    before truncate on raw.feature_importance
    for each statement execute function raw.forbid_change('importance rows');

-- feature value distributions for drift (brain_lib.analysis.distribution_rows): per
-- nightly computation, feature and bin, the bin's edges (deciles of the training
-- window) and the row counts of the training and the recent window; bin 0 = the
-- feature could not be binned (skipped_reason). Append-only.
create table if not exists raw.feature_distributions (
    version_id      text             not null references raw.model_versions (version_id),
    computed_at     timestamptz      not null,
    feature         text             not null,
    bin             integer          not null,
    lower_edge      double precision null,
    upper_edge      double precision null,
    train_count     bigint           not null,
    recent_count    bigint           not null,
    skipped_reason  text             null,
    train_start     timestamptz      not null,
    train_end       timestamptz      not null,
    window_start    timestamptz      not null,
    window_end      timestamptz      not null,
    primary key (version_id, computed_at, feature, bin)
);
create or replace trigger feature_distributions_append_only
    before update or delete on raw.feature_distributions
    for each row execute function raw.forbid_change('distribution rows');
create or replace trigger feature_distributions_no_truncate
    before truncate on raw.feature_distributions
    for each statement execute function raw.forbid_change('distribution rows');

-- symbols marked for retraining (by nightly-feature-analysis when their features
-- shifted); daily-retrain adds pending ones to its run and sets consumed_at when it
-- has landed a version. At most one pending request per symbol.
create table if not exists raw.retrain_requests (
    request_id        bigint generated always as identity primary key,
    exchange          text        not null,
    symbol            text        not null,
    timeframe         text        not null,
    reason            text        not null,
    version_id        text        null references raw.model_versions (version_id),
    source            text        not null,
    requested_run_id  text        null,
    requested_at      timestamptz not null default now(),
    consumed_at       timestamptz null,
    consumed_run_id   text        null
);
create unique index if not exists retrain_requests_one_pending
    on raw.retrain_requests (exchange, symbol, timeframe) where consumed_at is null;

-- every decision of brain_lib.selection.ModelSelector (v7): the regime it saw, the
-- champion it chose and why, its confidence; kind 'switch' also holds the model in
-- service and whether to replace it (hysteresis). Append-only. The version ids are
-- checked by the dbt source tests (relationships to raw.model_versions).
create table if not exists raw.model_selections (
    selection_id           bigint generated always as identity primary key,
    decided_at             timestamptz      not null,
    kind                   text             not null check (kind in ('select', 'switch')),
    exchange               text             not null,
    symbol                 text             not null,
    timeframe              text             not null,
    regime                 text             not null
        check (regime in ('low', 'normal', 'high', 'extreme')),
    regime_source          text             not null check (regime_source in ('detected', 'given')),
    as_of_bar              timestamptz      null,
    volatility             double precision null,
    volatility_percentile  double precision null
        check (volatility_percentile between 0 and 1),
    regime_run_bars        integer          null,
    preferred_model_type   text             not null,
    model_type             text             not null,
    version_id             text             not null,
    is_fallback            boolean          not null,
    confidence             double precision not null check (confidence between 0 and 1),
    learned_model_type     text             null,
    current_version_id     text             null,
    current_confidence     double precision null check (current_confidence between 0 and 1),
    switch                 boolean          null,
    reason                 text             not null,
    details                jsonb            null,
    created_at             timestamptz      not null default now()
);
create or replace trigger model_selections_append_only
    before update or delete on raw.model_selections
    for each row execute function raw.forbid_change('selections');
create or replace trigger model_selections_no_truncate
    before truncate on raw.model_selections
    for each statement execute function raw.forbid_change('selections');

-- market data (macros/raw_market.sql) and data quality (macros/raw_quality.sql)
{{ raw_market_ddl() }}
{{ raw_quality_ddl() }}

-- which revision of this DDL the warehouse has; brain_lib.dbt.ensure_raw_schema reads
-- it and runs create_raw_tables when it differs from var('raw_schema_version')
comment on schema raw is 'brain raw schema v{{ var("raw_schema_version") }}';
{% endmacro %}


{% macro create_raw_tables() %}
    {% call statement('create_raw_tables', auto_begin=True) %}
        {{ warehouse_roles_ddl() }}
        {{ raw_schema_ddl() }}
        {{ composite_score_ddl() }}
        {{ warehouse_grants_ddl() }}
    {% endcall %}
    {% do adapter.commit() %}
    {{ log("raw tables ensured (macros/raw_schema.sql, raw_market.sql, raw_quality.sql); functions brain.composite_score and brain.score_*", info=True) }}
{% endmacro %}
