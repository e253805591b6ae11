-- Cross-model rule: the version picked by best_model_per_symbol is the latest version
-- of its model type, and no latest version of another model type for the same
-- (exchange, symbol, timeframe) has a strictly higher composite score.
-- Returns the offending rows.

with

best as (

    select * from {{ ref('best_model_per_symbol') }}

),

scores as (

    select * from {{ ref('model_composite_scores') }}

),

newer_same_type as (

    select best.version_id, 'a newer version of the same model type exists' as problem
    from best
    inner join scores
        on scores.exchange = best.exchange
        and scores.symbol = best.symbol
        and scores.timeframe = best.timeframe
        and scores.model_type = best.model_type
        and (scores.trained_at, scores.version_id) > (best.trained_at, best.version_id)

),

latest_per_type as (

    select distinct on (exchange, symbol, timeframe, model_type) *
    from scores
    order by exchange, symbol, timeframe, model_type, trained_at desc, version_id desc

),

better_other_type as (

    select best.version_id, 'a latest version of another model type scores higher' as problem
    from best
    inner join latest_per_type as other
        on other.exchange = best.exchange
        and other.symbol = best.symbol
        and other.timeframe = best.timeframe
        and other.composite_score > best.composite_score

)

select * from newer_same_type
union all
select * from better_other_type
