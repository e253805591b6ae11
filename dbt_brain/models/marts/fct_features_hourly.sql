{#-
    Derivatives and sentiment features of every hourly candle, point-in-time.

    One row per 1h candle of stg_raw__ohlcv (exchange, symbol, ts = the bar's open
    time). Every value of a row is computed from data stamped at or before the bar's
    close (closed_at = ts + 1 hour), never later. Formulas: _marts__market.yml and
    docs/derivatives_features.md.

    How: no join of every bar to its window. Bars (at their close) and data rows go into
    timelines per (exchange, symbol), ordered by time with data before bars at equal
    stamps:
      as_of_timeline  bars, two "probe" points per bar (close - 1h and close - window,
                      for the open-interest changes), funding prints, open-interest
                      samples. "The latest row at or before t" is the running maximum of
                      [epoch of the stamp, values ...] arrays: the greatest stamp wins.
      window_timeline bars, funding prints, hourly liquidation and sentiment sums.
                      "(close - N hours, close]" is a RANGE frame of N hours minus 1
                      microsecond (timestamptz resolution): a stamp exactly N hours
                      before the close is out, one exactly at the close (a peer of the
                      bar) is in.
    Liquidations and sentiment are first summed per UTC hour, into the whole hour at or
    after each stamp (which can only delay a value, never advance it), so each frame
    holds a few dozen rows whatever the data volume; open-interest samples stay out of
    the RANGE frames (PostgreSQL recomputes a float sum per row).

    Vars (defaults here; dbt_project.yml need not define them):
      feature_window_hours        the "24h" windows: funding mean, liquidation sums,
                                  open-interest long change, sentiment (default 24)
      funding_zscore_prints       N, funding prints in the z-score's reference (default 21,
                                  7 days of 8-hourly funding)
      funding_zscore_min_prints   fewer prints than this give a NULL z-score (default 3)
-#}
{%- set window_hours = var('feature_window_hours', 24) | int -%}
{%- set zscore_prints = var('funding_zscore_prints', 21) | int -%}
{%- set zscore_min_prints = var('funding_zscore_min_prints', 3) | int -%}
{%- if window_hours < 1 or zscore_min_prints < 2 or zscore_prints < zscore_min_prints -%}
    {{ exceptions.raise_compiler_error(
        "fct_features_hourly: needs feature_window_hours >= 1 and "
        ~ "2 <= funding_zscore_min_prints <= funding_zscore_prints") }}
{%- endif -%}
{%- set window = "interval '" ~ window_hours ~ " hours'" -%}

with

bars as (

    -- the hourly candles; a bar's features may use data stamped up to its close
    select
        exchange,
        symbol,
        opened_at as ts,
        opened_at + interval '1 hour' as closed_at
    from {{ ref('stg_raw__ohlcv') }}
    where timeframe = '1h'

),

bar_symbols as (

    select distinct exchange, symbol from bars

),

-- ------------------------------------------------------------------ symbol mapping
-- Derivatives data feed the candles of the same symbol; a spot symbol B/Q (no ':')
-- falls back to its linear perpetual B/Q:Q when the dataset has nothing under B/Q.

symbol_candidates as (

    select exchange, symbol as bar_symbol, symbol as data_symbol, 1 as preference
    from bar_symbols

    union all

    select exchange, symbol, symbol || ':' || split_part(symbol, '/', 2), 2
    from bar_symbols
    where strpos(symbol, ':') = 0 and strpos(symbol, '/') > 0

),

-- -------------------------------------------------------------------- the data
-- Each dataset is read once, joined to the candidates and reduced (liquidations to
-- hours, open interest to one sample per stamp); then only the rows of the preferred
-- candidate that has data are kept.

funding_candidates as (

    select
        c.exchange,
        c.bar_symbol as symbol,
        c.preference,
        f.funding_at,
        f.funding_rate
    from {{ ref('stg_market__funding_rates') }} as f
    inner join symbol_candidates as c
        on c.exchange = f.exchange and c.data_symbol = f.symbol
    where f.funding_rate is not null

),

open_interest_candidates as (

    -- one sample per stamp: samples of several periods at one instant are averaged
    select
        c.exchange,
        c.bar_symbol as symbol,
        c.preference,
        o.sampled_at,
        avg(o.open_interest_amount) as open_interest_amount,
        avg(o.open_interest_value) as open_interest_value
    from {{ ref('stg_market__open_interest') }} as o
    inner join symbol_candidates as c
        on c.exchange = o.exchange and c.data_symbol = o.symbol
    group by 1, 2, 3, 4

),

liquidation_candidates as (

    -- per UTC hour (hour_end - 1h, hour_end]: a stamp on the whole hour belongs to the
    -- hour that ends there
    select
        c.exchange,
        c.bar_symbol as symbol,
        c.preference,
        date_trunc('hour', l.liquidated_at - interval '1 microsecond', 'UTC')
            + interval '1 hour' as hour_end,
        sum(l.notional) filter (where l.side = 'long') as long_notional,
        sum(l.notional) filter (where l.side = 'short') as short_notional,
        count(*) as n_liquidations
    from {{ ref('stg_market__liquidations') }} as l
    inner join symbol_candidates as c
        on c.exchange = l.exchange and c.data_symbol = l.symbol
    group by 1, 2, 3, 4

),

preferred as (

    select exchange, symbol, 'funding' as dataset, min(preference) as preference
    from funding_candidates
    group by 1, 2
    union all
    select exchange, symbol, 'open_interest', min(preference)
    from open_interest_candidates
    group by 1, 2
    union all
    select exchange, symbol, 'liquidations', min(preference)
    from liquidation_candidates
    group by 1, 2

),

funding as (

    -- each print with its z-score against the last N prints (itself included)
    select
        f.exchange,
        f.symbol,
        f.funding_at,
        f.funding_rate,
        case
            when count(*) over last_prints >= {{ zscore_min_prints }}
                and stddev_samp(f.funding_rate) over last_prints > 0
                then (f.funding_rate - avg(f.funding_rate) over last_prints)
                    / stddev_samp(f.funding_rate) over last_prints
        end as funding_rate_zscore
    from funding_candidates as f
    inner join preferred as p
        on p.dataset = 'funding' and p.exchange = f.exchange and p.symbol = f.symbol
        and p.preference = f.preference
    window last_prints as (
        partition by f.exchange, f.symbol
        order by f.funding_at
        rows between {{ zscore_prints - 1 }} preceding and current row
    )

),

open_interest as (

    select o.exchange, o.symbol, o.sampled_at, o.open_interest_amount, o.open_interest_value
    from open_interest_candidates as o
    inner join preferred as p
        on p.dataset = 'open_interest' and p.exchange = o.exchange and p.symbol = o.symbol
        and p.preference = o.preference

),

liquidation_hours as (

    select l.exchange, l.symbol, l.hour_end, l.long_notional, l.short_notional, l.n_liquidations
    from liquidation_candidates as l
    inner join preferred as p
        on p.dataset = 'liquidations' and p.exchange = l.exchange and p.symbol = l.symbol
        and p.preference = l.preference

),

sentiment_items_hours as (

    select
        upper(symbol) as symbol_key,
        date_trunc('hour', published_at - interval '1 microsecond', 'UTC')
            + interval '1 hour' as hour_end,
        sum(score) as score_sum,
        count(*) as n_items
    from {{ ref('stg_market__sentiment') }}
    where score is not null
    group by 1, 2

),

sentiment_hours as (

    -- items about the symbol, its base asset (BTC for BTC/USDT) or the whole market
    -- (symbol NULL), for every exchange's candles of the symbol
    select
        b.exchange,
        b.symbol,
        s.hour_end,
        sum(s.score_sum) as score_sum,
        sum(s.n_items) as n_items
    from bar_symbols as b
    inner join sentiment_items_hours as s
        on s.symbol_key is null
        or s.symbol_key = upper(b.symbol)
        or s.symbol_key = upper(split_part(b.symbol, '/', 1))
    group by 1, 2, 3

),

-- ------------------------------------------------- as-of values (latest at or before)

as_of_timeline as (

    -- bars at their close, probes at close - 1h and close - window, and the prints;
    -- at equal stamps the data sort first (after_data = 0), so a print stamped exactly
    -- at a bar's close is known to that bar
    select
        exchange, symbol, closed_at as at, 1 as after_data, 'bar' as kind, ts as bar_ts,
        null::double precision[] as funding_print,
        null::double precision[] as open_interest_sample
    from bars

    union all

    select exchange, symbol, closed_at - interval '1 hour', 1, 'probe_1h', ts, null, null
    from bars

    union all

    select exchange, symbol, closed_at - {{ window }}, 1, 'probe_window', ts, null, null
    from bars

    union all

    -- [stamp in epoch seconds, values ...]: the greatest array is the latest print
    select
        exchange, symbol, funding_at, 0, 'funding', null,
        array[
            extract(epoch from funding_at)::double precision,
            funding_rate,
            funding_rate_zscore
        ],
        null
    from funding

    union all

    select
        exchange, symbol, sampled_at, 0, 'open_interest', null,
        null,
        array[
            extract(epoch from sampled_at)::double precision,
            open_interest_amount,
            open_interest_value
        ]
    from open_interest

),

as_of as (

    -- the running maximum of [stamp, values ...] is the latest data row so far (stamps
    -- are unique per symbol and dataset, so the stamp alone decides the maximum)
    select
        exchange,
        symbol,
        kind,
        bar_ts,
        max(funding_print) over running as funding_print,
        max(open_interest_sample) over running as open_interest_sample
    from as_of_timeline
    window running as (
        partition by exchange, symbol
        order by at, after_data
        rows between unbounded preceding and current row
    )

),

-- ------------------------------------------------- trailing windows (close - N, close]

window_timeline as (

    select
        exchange, symbol, closed_at as at, 1 as after_data, 'bar' as kind, ts as bar_ts,
        null::double precision as funding_rate,
        null::double precision as liq_long_notional,
        null::double precision as liq_short_notional,
        null::bigint as liq_count,
        null::double precision as sentiment_score_sum,
        null::bigint as sentiment_count
    from bars

    union all

    select
        exchange, symbol, funding_at, 0, 'funding', null,
        funding_rate, null, null, null, null, null
    from funding

    union all

    select
        exchange, symbol, hour_end, 0, 'liquidations', null,
        null, long_notional, short_notional, n_liquidations, null, null
    from liquidation_hours

    union all

    select
        exchange, symbol, hour_end, 0, 'sentiment', null,
        null, null, null, null, score_sum, n_items
    from sentiment_hours

),

windowed as (

    select
        exchange,
        symbol,
        kind,
        bar_ts,

        -- coverage: has the dataset started by now (anything stamped so far)?
        count(*) filter (where kind = 'liquidations') over running > 0 as has_liquidations,
        count(*) filter (where kind = 'sentiment') over running > 0 as has_sentiment,

        -- (at - window, at]; RANGE frames include the peers of the current row, so
        -- data stamped exactly at the close are in
        sum(funding_rate) over trailing_window
            / nullif(count(funding_rate) over trailing_window, 0) as funding_rate_mean_window,
        sum(liq_long_notional) over trailing_window as liq_long_notional_window,
        sum(liq_short_notional) over trailing_window as liq_short_notional_window,
        sum(liq_count) over trailing_window as liq_count_window,
        sum(sentiment_score_sum) over trailing_window as sentiment_score_sum_window,
        sum(sentiment_count) over trailing_window as sentiment_count_window,

        -- (at - 1h, at]
        sum(liq_long_notional) over trailing_hour as liq_long_notional_hour,
        sum(liq_short_notional) over trailing_hour as liq_short_notional_hour,
        sum(liq_count) over trailing_hour as liq_count_hour

    from window_timeline
    window
        running as (
            partition by exchange, symbol
            order by at, after_data
            rows between unbounded preceding and current row
        ),
        trailing_window as (
            partition by exchange, symbol
            order by at
            range between {{ window }} - interval '1 microsecond' preceding and current row
        ),
        trailing_hour as (
            partition by exchange, symbol
            order by at
            range between interval '1 hour' - interval '1 microsecond' preceding
                and current row
        )

),

-- --------------------------------------------------------- one row per bar again

per_bar as (

    -- the bar's own rows and its probes, gathered by (exchange, symbol, bar_ts)
    select
        exchange,
        symbol,
        bar_ts as ts,
        max(funding_print) filter (where kind = 'bar') as funding_print,
        max(open_interest_sample) filter (where kind = 'bar') as open_interest_sample,
        max(open_interest_sample) filter (where kind = 'probe_1h') as open_interest_sample_1h,
        max(open_interest_sample) filter (where kind = 'probe_window')
            as open_interest_sample_window,
        bool_or(has_liquidations) as has_liquidations,
        bool_or(has_sentiment) as has_sentiment,
        max(funding_rate_mean_window) as funding_rate_mean_window,
        max(liq_long_notional_window) as liq_long_notional_window,
        max(liq_short_notional_window) as liq_short_notional_window,
        max(liq_count_window) as liq_count_window,
        max(sentiment_score_sum_window) as sentiment_score_sum_window,
        max(sentiment_count_window) as sentiment_count_window,
        max(liq_long_notional_hour) as liq_long_notional_hour,
        max(liq_short_notional_hour) as liq_short_notional_hour,
        max(liq_count_hour) as liq_count_hour
    from (
        select
            exchange, symbol, kind, bar_ts, funding_print, open_interest_sample,
            null::boolean as has_liquidations,
            null::boolean as has_sentiment,
            null::double precision as funding_rate_mean_window,
            null::double precision as liq_long_notional_window,
            null::double precision as liq_short_notional_window,
            null::numeric as liq_count_window,
            null::double precision as sentiment_score_sum_window,
            null::numeric as sentiment_count_window,
            null::double precision as liq_long_notional_hour,
            null::double precision as liq_short_notional_hour,
            null::numeric as liq_count_hour
        from as_of
        where bar_ts is not null

        union all

        select
            exchange, symbol, kind, bar_ts, null, null,
            has_liquidations,
            has_sentiment,
            funding_rate_mean_window,
            liq_long_notional_window,
            liq_short_notional_window,
            liq_count_window,
            sentiment_score_sum_window,
            sentiment_count_window,
            liq_long_notional_hour,
            liq_short_notional_hour,
            liq_count_hour
        from windowed
        where kind = 'bar'
    ) as bar_and_probe_rows
    group by exchange, symbol, bar_ts

),

features as (

    select
        exchange::text as exchange,
        symbol::text as symbol,
        ts::timestamptz as ts,
        (ts + interval '1 hour')::timestamptz as closed_at,

        -- funding
        funding_print[2] as funding_rate,
        funding_rate_mean_window as funding_rate_mean_24h,
        funding_print[3] as funding_rate_zscore,

        -- open interest
        open_interest_sample[2] as open_interest,
        open_interest_sample[3] as open_interest_value,
        open_interest_sample[2] / nullif(open_interest_sample_1h[2], 0) - 1
            as open_interest_change_1h,
        open_interest_sample[2] / nullif(open_interest_sample_window[2], 0) - 1
            as open_interest_change_24h,

        -- liquidations: NULL before the symbol's first liquidation, 0 for a quiet hour
        case when has_liquidations then coalesce(liq_long_notional_hour, 0) end
            as liq_long_notional_1h,
        case when has_liquidations then coalesce(liq_short_notional_hour, 0) end
            as liq_short_notional_1h,
        case when has_liquidations then coalesce(liq_count_hour, 0)::integer end
            as liq_count_1h,
        (coalesce(liq_long_notional_hour, 0) - coalesce(liq_short_notional_hour, 0))
            / nullif(coalesce(liq_long_notional_hour, 0)
                + coalesce(liq_short_notional_hour, 0), 0)
            as liq_imbalance_1h,
        case when has_liquidations then coalesce(liq_long_notional_window, 0) end
            as liq_long_notional_24h,
        case when has_liquidations then coalesce(liq_short_notional_window, 0) end
            as liq_short_notional_24h,
        case when has_liquidations then coalesce(liq_count_window, 0)::integer end
            as liq_count_24h,
        (coalesce(liq_long_notional_window, 0) - coalesce(liq_short_notional_window, 0))
            / nullif(coalesce(liq_long_notional_window, 0)
                + coalesce(liq_short_notional_window, 0), 0)
            as liq_imbalance_24h,

        -- sentiment
        sentiment_score_sum_window / nullif(sentiment_count_window, 0)
            as sentiment_score_mean_24h,
        case when has_sentiment then coalesce(sentiment_count_window, 0)::integer end
            as sentiment_count_24h

    from per_bar

)

select * from features
