{#-
    One row per champion period of each (exchange, symbol, timeframe, model_type): which
    version was champion from when (inclusive) to when (exclusive; NULL while current).
    Built from the event log alone, so it answers "which version was champion at time
    t" for any t. See the docs block `model_champion_history` (_marts__docs.md).
-#}

with

events as (

    select * from {{ ref('stg_raw__model_events') }}

),

champion_changes as (

    -- the events that make version_id the champion; a rollback (an automatic refusal
    -- of a challenger) leaves the champion where it was and starts no period. A
    -- champion_unservable with no version_id leaves the key without a champion: it
    -- ends the period before it and starts none (dropped in `final`)
    select * from events
    where event_type in (
        'promotion', 'manual_promotion', 'manual_rollback', 'champion_unservable'
    )

),

ranked_within_instant as (

    -- two changes of one key at the same instant: the later event (greater event_id)
    -- wins; the earlier one was never champion for any length of time
    select
        *,
        row_number() over (
            partition by exchange, symbol, timeframe, model_type, occurred_at
            order by event_id desc
        ) as instant_rank
    from champion_changes

),

periods as (

    -- a period ends when the next change of the same key begins
    select
        exchange,
        symbol,
        timeframe,
        model_type,
        version_id,
        occurred_at as valid_from,
        lead(occurred_at) over (
            partition by exchange, symbol, timeframe, model_type
            order by occurred_at, event_id
        ) as valid_to,
        event_type,
        reason,
        previous_version_id,
        event_id
    from ranked_within_instant
    where instant_rank = 1

),

final as (

    select
        exchange,
        symbol,
        timeframe,
        model_type,
        version_id,
        valid_from,
        valid_to,
        event_type,
        reason,
        previous_version_id,
        valid_to is null as is_current,
        event_id
    from periods
    where version_id is not null

)

select * from final
