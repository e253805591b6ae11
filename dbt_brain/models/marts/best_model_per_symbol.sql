{#-
    One row per (exchange, symbol, timeframe): the best model type for the symbol now,
    ranked only among champions scored on the same window. See the docs block
    `best_model_per_symbol` (_marts__docs.md).
-#}

with

champions as (

    select * from {{ ref('stg_raw__model_champions') }}

),

scores as (

    select * from {{ ref('model_composite_scores') }}

),

events as (

    select * from {{ ref('stg_raw__model_events') }}

),

replay_metrics as (

    select * from {{ ref('stg_raw__model_metrics') }}
    where metric_scope = 'champion_replay'

),

replayed as (

    -- the champion of a judgement replayed on the challenger's bars, scored by the same
    -- function as every version (one row per judged challenger)
    select
        version_id as judged_version_id,
        brain.composite_score(
            max(metric_value) filter (where metric_name = 'sharpe'),
            max(metric_value) filter (where metric_name = 'sortino'),
            max(metric_value) filter (where metric_name = 'calmar'),
            max(metric_value) filter (where metric_name = 'profit_factor'),
            max(metric_value) filter (where metric_name = 'hit_ratio'),
            max(metric_value) filter (where metric_name = 'max_drawdown'),
            max(metric_value) filter (where metric_name = 'round_trips'),
            max(metric_value) filter (where metric_name = 'exposure')
        ) as composite_score,
        max(metric_value) filter (where metric_name = 'sharpe') as sharpe
    from replay_metrics
    group by version_id

),

judgements as (

    -- every automatic judgement: the champion it left in place and that champion's
    -- score on the judged window (the challenger's own score when it was promoted,
    -- the champion's replay when the challenger was refused)
    select
        events.exchange,
        events.symbol,
        events.timeframe,
        events.model_type,
        events.event_id,
        events.occurred_at,
        case
            when events.event_type = 'promotion' then events.version_id
            else events.previous_version_id
        end as champion_version_id,
        case
            when events.event_type = 'promotion' then scores.composite_score
            else replayed.composite_score
        end as composite_score,
        case
            when events.event_type = 'promotion' then scores.sharpe
            else replayed.sharpe
        end as sharpe,
        scores.window_start,
        scores.window_end,
        scores.dataset_fingerprint
    from events
    inner join scores
        on scores.version_id = events.version_id
    left join replayed
        on replayed.judged_version_id = events.version_id
    where events.event_type in ('promotion', 'rollback')

),

latest_judgements as (

    select
        *,
        row_number() over (
            partition by exchange, symbol, timeframe, model_type
            order by occurred_at desc, event_id desc
        ) as recency
    from judgements

),

candidates as (

    -- the champion of each model type, scored on the window of the newest judgement of
    -- its type when that judgement kept it (or made it) champion; after a manual change
    -- of champion, on its own training run's window
    select
        champions.exchange,
        champions.symbol,
        champions.timeframe,
        champions.model_type,
        champions.version_id,
        own.trained_at,
        case when judged.champion_version_id = champions.version_id
            then judged.composite_score else own.composite_score end as composite_score,
        case when judged.champion_version_id = champions.version_id
            then judged.sharpe else own.sharpe end as sharpe,
        case when judged.champion_version_id = champions.version_id
            then judged.window_start else own.window_start end as window_start,
        case when judged.champion_version_id = champions.version_id
            then judged.window_end else own.window_end end as window_end,
        case when judged.champion_version_id = champions.version_id
            then judged.dataset_fingerprint else own.dataset_fingerprint end
            as dataset_fingerprint
    from champions
    inner join scores as own
        on own.version_id = champions.version_id
    left join latest_judgements as judged
        on judged.exchange = champions.exchange
        and judged.symbol = champions.symbol
        and judged.timeframe = champions.timeframe
        and judged.model_type = champions.model_type
        and judged.recency = 1

),

reference_windows as (

    -- the newest window among a symbol's candidates: only candidates scored on it
    -- (same bars of the same data) are compared
    select
        exchange,
        symbol,
        timeframe,
        window_start,
        window_end,
        dataset_fingerprint,
        row_number() over (
            partition by exchange, symbol, timeframe
            order by window_end desc, window_start desc, dataset_fingerprint
        ) as recency
    from candidates
    where window_end is not null

),

compared as (

    select
        candidates.*,
        count(*) over (
            partition by candidates.exchange, candidates.symbol, candidates.timeframe
        ) as n_candidates,
        (
            candidates.window_start = ref.window_start
            and candidates.window_end = ref.window_end
            and candidates.dataset_fingerprint is not distinct from ref.dataset_fingerprint
        ) as is_comparable
    from candidates
    inner join reference_windows as ref
        on ref.exchange = candidates.exchange
        and ref.symbol = candidates.symbol
        and ref.timeframe = candidates.timeframe
        and ref.recency = 1

),

ranked as (

    -- equal scores go to the newest version; version ids sort by time, so they break
    -- the last ties
    select
        *,
        count(*) filter (where is_comparable and composite_score is not null) over (
            partition by exchange, symbol, timeframe
        ) as n_compared,
        row_number() over (
            partition by exchange, symbol, timeframe
            order by
                (is_comparable and composite_score is not null) desc,
                composite_score desc,
                trained_at desc,
                version_id desc
        ) as score_rank
    from compared

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
        window_start,
        window_end,
        n_candidates::integer as n_candidates,
        n_compared::integer as n_compared
    from ranked
    where score_rank = 1 and is_comparable and composite_score is not null

)

select * from final
