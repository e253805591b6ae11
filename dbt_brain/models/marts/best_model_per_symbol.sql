{#-
    One row per (exchange, symbol, timeframe): the best model type for the symbol now.
    Candidates are the latest version of each model type; the highest composite score
    wins. See the docs block `best_model_per_symbol` (_marts__docs.md).
-#}

with

scores as (

    select * from {{ ref('model_composite_scores') }}

),

latest_per_model_type as (

    -- newest version of each model type; version ids sort by time, so they break ties
    select
        *,
        row_number() over (
            partition by exchange, symbol, timeframe, model_type
            order by trained_at desc, version_id desc
        ) as recency_rank
    from scores

),

candidates as (

    select * from latest_per_model_type
    where recency_rank = 1

),

ranked as (

    select
        *,
        count(*) over (partition by exchange, symbol, timeframe) as n_candidates,
        row_number() over (
            partition by exchange, symbol, timeframe
            order by composite_score desc, trained_at desc, version_id desc
        ) as score_rank
    from candidates

),

final as (

    select
        exchange,
        symbol,
        timeframe,
        model_type,
        version_id,
        composite_score,
        sharpe,
        trained_at,
        n_candidates::integer as n_candidates
    from ranked
    where score_rank = 1

)

select * from final
