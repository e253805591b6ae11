-- Cross-model rule: the event log and the online pointer agree. The current period of
-- every key in model_champion_history is the champion in raw.model_champions, started
-- by the event the pointer names, and every champion has a current period.
-- Returns the offending rows.

with

current_periods as (

    select * from {{ ref('model_champion_history') }}
    where is_current

),

champions as (

    select * from {{ ref('stg_raw__model_champions') }}

)

select
    coalesce(current_periods.exchange, champions.exchange) as exchange,
    coalesce(current_periods.symbol, champions.symbol) as symbol,
    coalesce(current_periods.timeframe, champions.timeframe) as timeframe,
    coalesce(current_periods.model_type, champions.model_type) as model_type,
    current_periods.version_id as history_version_id,
    champions.version_id as champion_version_id,
    current_periods.event_id as history_event_id,
    champions.event_id as champion_event_id
from current_periods
full outer join champions
    on current_periods.exchange = champions.exchange
    and current_periods.symbol = champions.symbol
    and current_periods.timeframe = champions.timeframe
    and current_periods.model_type = champions.model_type
where
    current_periods.version_id is distinct from champions.version_id
    or current_periods.event_id is distinct from champions.event_id
