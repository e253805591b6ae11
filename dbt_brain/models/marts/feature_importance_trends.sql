{#-
    How each feature's importance moves, night after night: one row per (exchange,
    symbol, timeframe, model_type, method, feature, analysis_date), from the nightly
    importance of the champion of that day (the day's latest computation; the version
    may change from day to day, the series continues).

    slope_7d / slope_30d: least-squares slope of normalised importance against the day
    number over the points of the last 7 / 30 days, the current day included
    (regr_slope; NULL with fewer than two points), in normalised importance per day,
    rounded to 8 decimals.
    rank_change: previous point's rank minus this rank (positive = the feature rose).
    rank_change_7d: rank of the earliest point of the 7-day window minus this rank.
-#}

with

importance as (

    select * from {{ ref('stg_raw__feature_importance') }}

),

versions as (

    select version_id, exchange, symbol, timeframe, model_type
    from {{ ref('stg_raw__model_versions') }}

),

nightly as (

    select
        versions.exchange,
        versions.symbol,
        versions.timeframe,
        versions.model_type,
        importance.importance_method,
        importance.feature_name,
        importance.version_id,
        importance.computed_at,
        (importance.computed_at at time zone 'UTC')::date as analysis_date,
        importance.normalised_importance,
        importance.importance_rank
    from importance
    inner join versions on versions.version_id = importance.version_id
    where importance.importance_kind = 'nightly'
        and importance.importance_rank is not null

),

latest_of_day as (

    select
        *,
        row_number() over (
            partition by
                exchange, symbol, timeframe, model_type, importance_method, feature_name,
                analysis_date
            order by computed_at desc, version_id desc
        ) as nth_of_day
    from nightly

),

points as (

    select
        *,
        (analysis_date - date '1970-01-01')::double precision as day_number
    from latest_of_day
    where nth_of_day = 1

),

trended as (

    select
        exchange,
        symbol,
        timeframe,
        model_type,
        importance_method,
        feature_name,
        analysis_date,
        version_id,
        computed_at,
        normalised_importance,
        importance_rank,
        regr_slope(normalised_importance, day_number) over last_7_days as slope_7d_raw,
        count(*) over last_7_days as points_7d,
        regr_slope(normalised_importance, day_number) over last_30_days as slope_30d_raw,
        count(*) over last_30_days as points_30d,
        lag(importance_rank) over series as previous_rank,
        first_value(importance_rank) over last_7_days as rank_7d_start
    from points
    window
        series as (
            partition by exchange, symbol, timeframe, model_type, importance_method, feature_name
            order by analysis_date
        ),
        last_7_days as (
            partition by exchange, symbol, timeframe, model_type, importance_method, feature_name
            order by analysis_date
            range between interval '6 days' preceding and current row
        ),
        last_30_days as (
            partition by exchange, symbol, timeframe, model_type, importance_method, feature_name
            order by analysis_date
            range between interval '29 days' preceding and current row
        )

),

final as (

    select
        exchange,
        symbol,
        timeframe,
        model_type,
        importance_method,
        feature_name,
        analysis_date,
        version_id,
        computed_at,
        normalised_importance,
        importance_rank,
        round(slope_7d_raw::numeric, 8)::double precision as slope_7d,
        points_7d::integer as points_7d,
        round(slope_30d_raw::numeric, 8)::double precision as slope_30d,
        points_30d::integer as points_30d,
        previous_rank,
        previous_rank - importance_rank as rank_change,
        rank_7d_start - importance_rank as rank_change_7d
    from trended

)

select * from final
