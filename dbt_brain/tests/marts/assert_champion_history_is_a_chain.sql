{{ config(severity='warn') }}
-- Content check of the event log (warn): each champion-changing event names, as
-- previous_version_id, the champion it replaced, i.e. the version of the period before;
-- the first period of a key names none. A mismatch means an event was recorded from a
-- stale view of the champion (or two changes landed at the same instant, where the
-- earlier one starts no period). Returns the offending periods.

with

periods as (

    select
        *,
        lag(version_id) over (
            partition by exchange, symbol, timeframe, model_type
            order by valid_from
        ) as version_before
    from {{ ref('model_champion_history') }}

)

select
    exchange,
    symbol,
    timeframe,
    model_type,
    valid_from,
    version_id,
    previous_version_id,
    version_before
from periods
where previous_version_id is distinct from version_before
