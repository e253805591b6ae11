{#-
    One row per UTC day, exchange, symbol and timeframe: what the model selector decided
    (brain_lib.selection, docs/selection.md). Counts of decisions, fallbacks and
    switches; the mean and lowest confidence; how often the regime changed from one
    decision to the next (a high count with few switches is the hysteresis at work);
    and the day's last decision.
-#}

with

selections as (

    select * from {{ ref('stg_raw__model_selections') }}

),

ordered as (

    select
        *,
        lag(regime) over (
            partition by exchange, symbol, timeframe order by decided_at, selection_id
        ) as previous_regime,
        row_number() over (
            partition by exchange, symbol, timeframe, decided_on
            order by decided_at desc, selection_id desc
        ) as recency
    from selections

),

daily as (

    select
        decided_on as day,
        exchange,
        symbol,
        timeframe,
        count(*)::integer as decisions,
        count(*) filter (where kind = 'switch')::integer as switch_checks,
        count(*) filter (where is_switch)::integer as switches,
        count(*) filter (where is_fallback)::integer as fallbacks,
        count(*) filter (
            where previous_regime is not null and regime <> previous_regime
        )::integer as regime_changes,
        avg(confidence)::double precision as mean_confidence,
        min(confidence)::double precision as min_confidence
    from ordered
    group by 1, 2, 3, 4

),

last_of_day as (

    select
        decided_on as day,
        exchange,
        symbol,
        timeframe,
        regime as last_regime,
        model_type as last_model_type,
        version_id as last_version_id,
        confidence as last_confidence,
        decided_at as last_decided_at
    from ordered
    where recency = 1

),

final as (

    select
        daily.day,
        daily.exchange,
        daily.symbol,
        daily.timeframe,
        daily.decisions,
        daily.switch_checks,
        daily.switches,
        daily.fallbacks,
        daily.regime_changes,
        daily.mean_confidence,
        daily.min_confidence,
        last_of_day.last_regime,
        last_of_day.last_model_type,
        last_of_day.last_version_id,
        last_of_day.last_confidence,
        last_of_day.last_decided_at
    from daily
    join last_of_day using (day, exchange, symbol, timeframe)

)

select * from final
