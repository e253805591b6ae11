{#-
    One row per (exchange, symbol, timeframe): the best model type for the symbol now.
    Candidates are the current champions (raw.model_champions, one per model type); the
    highest composite score wins. See the docs block `best_model_per_symbol`
    (_marts__docs.md).
-#}

with

champions as (

    select * from {{ ref('stg_raw__model_champions') }}

),

scores as (

    select * from {{ ref('model_composite_scores') }}

),

candidates as (

    -- the champion of each model type, with its scores; a version that is not (or no
    -- longer) champion never competes, however well it scores
    select
        champions.exchange,
        champions.symbol,
        champions.timeframe,
        champions.model_type,
        champions.version_id,
        scores.composite_score,
        scores.sharpe,
        scores.trained_at
    from champions
    inner join scores
        on champions.version_id = scores.version_id

),

ranked as (

    -- equal scores go to the newest version; version ids sort by time, so they break
    -- the last ties
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
