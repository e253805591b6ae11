-- Source rule: each row of raw.model_champions points at a champion-changing event
-- (promotion, manual_promotion, manual_rollback, champion_unservable) of the same key that made the same
-- version champion, and the version belongs to that key. Returns the offending rows.

with

champions as (

    select * from {{ source('raw', 'model_champions') }}

),

events as (

    select * from {{ source('raw', 'model_events') }}

),

versions as (

    select * from {{ source('raw', 'model_versions') }}

)

select
    champions.exchange,
    champions.symbol,
    champions.timeframe,
    champions.model_type,
    champions.version_id,
    champions.event_id,
    case
        when events.event_id is null then 'the event does not exist'
        when events.event_type not in
            ('promotion', 'manual_promotion', 'manual_rollback', 'champion_unservable')
            then 'the event is a ' || events.event_type || ', which changes no champion'
        when events.version_id is distinct from champions.version_id
            then 'the event made another version champion'
        when (events.exchange, events.symbol, events.timeframe, events.model_type)
            is distinct from
            (champions.exchange, champions.symbol, champions.timeframe, champions.model_type)
            then 'the event is about another key'
        else 'the version was trained for another key'
    end as problem
from champions
left join events
    on events.event_id = champions.event_id
left join versions
    on versions.version_id = champions.version_id
where
    events.event_id is null
    or events.event_type not in
        ('promotion', 'manual_promotion', 'manual_rollback', 'champion_unservable')
    or events.version_id is distinct from champions.version_id
    or (events.exchange, events.symbol, events.timeframe, events.model_type)
        is distinct from
        (champions.exchange, champions.symbol, champions.timeframe, champions.model_type)
    or (versions.exchange, versions.symbol, versions.timeframe, versions.model_type)
        is distinct from
        (champions.exchange, champions.symbol, champions.timeframe, champions.model_type)
