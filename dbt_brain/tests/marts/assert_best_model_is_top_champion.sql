-- Cross-model rule: the version picked by best_model_per_symbol is the current champion
-- of its model type, and its score is one the registry itself recorded for it on the
-- common window: the challenger score of the promotion that made it champion, the
-- champion score of a refusal that kept it, or (after a manual change) its own
-- composite score. Returns the offending rows.

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

events as (

    select * from {{ ref('stg_raw__model_events') }}

),

recorded as (

    select version_id, challenger_score as score from events where event_type = 'promotion'
    union all
    select previous_version_id, champion_score from events where event_type = 'rollback'
    union all
    select version_id, composite_score from scores

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

score_not_recorded as (

    select best.version_id, 'the pick''s score was never recorded for it' as problem
    from best
    where not exists (
        select 1 from recorded
        where recorded.version_id = best.version_id
          and abs(recorded.score - best.composite_score) < 1e-9
    )

)

select * from not_the_champion
union all
select * from score_not_recorded
