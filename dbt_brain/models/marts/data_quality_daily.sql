{#-
    One row per UTC day, raw table, suite, expectation and severity: how many validation
    runs checked it that day, how many of those checks failed, how many rows they found
    unexpected and checked, and the pass rate (passed checks / checks). A "check" is one
    row of raw.data_quality_results (one expectation over one batch); a run may check the
    same expectation on several batches (one per symbol).
-#}

with

results as (

    select * from {{ ref('stg_quality__data_quality_results') }}

),

daily as (

    select
        validated_on as day,
        source_table,
        suite,
        expectation_type,
        severity,
        count(distinct run_id)::integer as runs,
        count(*)::integer as checks,
        count(*) filter (where not passed)::integer as failures,
        coalesce(sum(unexpected_rows), 0)::bigint as unexpected_rows,
        coalesce(sum(batch_rows), 0)::bigint as rows_checked,
        count(distinct symbol)::integer as symbols,
        min(validated_at) as first_validated_at,
        max(validated_at) as last_validated_at,
        max(validated_at) filter (where not passed) as last_failed_at
    from results
    group by 1, 2, 3, 4, 5

),

final as (

    select
        day,
        source_table,
        suite,
        expectation_type,
        severity,
        runs,
        checks,
        failures,
        unexpected_rows,
        rows_checked,
        symbols,
        round((checks - failures)::numeric / checks, 4)::double precision as pass_rate,
        first_validated_at,
        last_validated_at,
        last_failed_at
    from daily

)

select * from final
