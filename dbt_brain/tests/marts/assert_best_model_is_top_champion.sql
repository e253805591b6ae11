-- Cross-model rule: the version picked by best_model_per_symbol is the current champion
-- of its model type, no champion of another model type for the same (exchange, symbol,
-- timeframe) has a strictly higher composite score, and every (exchange, symbol,
-- timeframe) with a champion has a pick. Returns the offending rows.

with

best as (

    select * from {{ ref('best_model_per_symbol') }}

),

champions as (

    select * from {{ ref('stg_raw__model_champions') }}

),

scores as (

    select * from {{ ref('model_composite_scores') }}

),

not_the_champion as (

    select best.version_id, 'the pick is not the champion of its model type' as problem
    from best
    left join champions
        on champions.exchange = best.exchange
        and champions.symbol = best.symbol
        and champions.timeframe = best.timeframe
        and champions.model_type = best.model_type
    where champions.version_id is distinct from best.version_id

),

better_other_champion as (

    select best.version_id, 'a champion of another model type scores higher' as problem
    from best
    inner join champions
        on champions.exchange = best.exchange
        and champions.symbol = best.symbol
        and champions.timeframe = best.timeframe
    inner join scores
        on scores.version_id = champions.version_id
    where scores.composite_score > best.composite_score

),

no_pick as (

    select champions.version_id, 'a symbol with a champion has no pick' as problem
    from champions
    left join best
        on best.exchange = champions.exchange
        and best.symbol = champions.symbol
        and best.timeframe = champions.timeframe
    where best.version_id is null

)

select * from not_the_champion
union all
select * from better_other_champion
union all
select * from no_pick
