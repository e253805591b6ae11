{#-
    Raw tables of data-quality monitoring (brain_lib.quality, expectations/). Called from
    raw_schema_ddl() (macros/raw_schema.sql); same migration rules.
-#}

{% macro raw_quality_ddl() %}
-- one row per expectation of each validation run (Great Expectations checkpoint);
-- append-only
create table if not exists raw.data_quality_results (
    result_id         bigint generated always as identity primary key,
    run_id            text             not null,
    suite             text             not null,
    table_name        text             not null,
    expectation       text             not null,
    column_name       text             null,
    severity          text             not null default 'blocking',
    success           boolean          not null,
    observed_value    jsonb            null,
    unexpected_count  bigint           null,
    element_count     bigint           null,
    exchange          text             null,
    symbol            text             null,
    batch_start       timestamptz      null,
    batch_end         timestamptz      null,
    validated_at      timestamptz      not null default now()
);
create or replace trigger data_quality_results_append_only
    before update or delete on raw.data_quality_results
    for each row execute function raw.forbid_change('quality results');
{% endmacro %}
