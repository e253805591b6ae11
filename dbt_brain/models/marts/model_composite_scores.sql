{#-
    One row per model version: its out-of-sample metrics, trading statistics,
    baselines, deflated Sharpe ratio, the bounded component scores, whether the
    backtest shows evidence, and the composite score. The formula is NOT written here:
    the columns call the SQL functions brain.score_*, brain.has_evidence and
    brain.composite_score (macros/composite_score.sql, created by the on-run-start
    hook), the same functions Python uses to judge a challenger. It is explained in the
    docs block `composite_score_formula` (_marts__docs.md); its weights and evidence
    rule are dbt vars (dbt_project.yml).
-#}
{#- validates the weights and the evidence rule at compile time too, and records them -#}
{%- set weights = composite_score_weights() %}
{%- set evidence = composite_evidence() %}
-- composite weights: {% for name in composite_score_components() %}{{ name }} {{ weights[name] }}{{ ", " if not loop.last }}{% endfor %}
-- evidence: {{ evidence.min_round_trips }} round trips, exposure {{ evidence.min_exposure }}

with

versions as (

    select * from {{ ref('stg_raw__model_versions') }}

),

oos_metrics as (

    select * from {{ ref('stg_raw__model_metrics') }}
    where metric_scope = 'oos'

),

metrics_pivoted as (

    -- long to wide; (version_id, scope, metric) is unique, so each max() sees one value
    select
        version_id,
        min(window_start) as window_start,
        max(window_end) as window_end,
        -- performance
        max(metric_value) filter (where metric_name = 'sharpe') as sharpe,
        max(metric_value) filter (where metric_name = 'sortino') as sortino,
        max(metric_value) filter (where metric_name = 'hit_ratio') as hit_ratio,
        max(metric_value) filter (where metric_name = 'profit_factor') as profit_factor,
        max(metric_value) filter (where metric_name = 'max_drawdown') as max_drawdown,
        max(metric_value) filter (where metric_name = 'calmar') as calmar,
        max(metric_value) filter (where metric_name = 'annualised_return') as annualised_return,
        max(metric_value) filter (where metric_name = 'n_bars') as n_bars,
        -- luck
        max(metric_value) filter (where metric_name = 'psr') as psr,
        max(metric_value) filter (where metric_name = 'dsr') as dsr,
        max(metric_value) filter (where metric_name = 'dsr_trials') as dsr_trials,
        -- trading
        max(metric_value) filter (where metric_name = 'turnover_per_bar') as turnover_per_bar,
        max(metric_value) filter (where metric_name = 'exposure') as exposure,
        max(metric_value) filter (where metric_name = 'round_trips') as round_trips,
        max(metric_value) filter (where metric_name = 'avg_holding_bars') as avg_holding_bars,
        -- baselines on the same bars
        max(metric_value) filter (where metric_name = 'buy_hold_sharpe') as buy_hold_sharpe,
        max(metric_value) filter (where metric_name = 'buy_hold_total_return') as buy_hold_total_return,
        max(metric_value) filter (where metric_name = 'flat_total_return') as flat_total_return,
        max(metric_value) filter (where metric_name = 'excess_sharpe') as excess_sharpe
    from oos_metrics
    group by version_id

),

versions_with_metrics as (

    -- every version, also one without oos metrics (all its metrics NULL)
    select
        versions.version_id,
        versions.exchange,
        versions.symbol,
        versions.timeframe,
        versions.model_type,
        versions.trained_at,
        versions.train_start,
        versions.train_end,
        versions.n_rows,
        versions.manifest -> 'dataset' ->> 'fingerprint_sha256' as dataset_fingerprint,
        metrics_pivoted.window_start,
        metrics_pivoted.window_end,
        metrics_pivoted.sharpe,
        metrics_pivoted.sortino,
        metrics_pivoted.hit_ratio,
        metrics_pivoted.profit_factor,
        metrics_pivoted.max_drawdown,
        metrics_pivoted.calmar,
        metrics_pivoted.annualised_return,
        metrics_pivoted.n_bars::integer as n_bars,
        metrics_pivoted.psr,
        metrics_pivoted.dsr,
        metrics_pivoted.dsr_trials::integer as dsr_trials,
        metrics_pivoted.turnover_per_bar,
        metrics_pivoted.exposure,
        metrics_pivoted.round_trips::integer as round_trips,
        metrics_pivoted.avg_holding_bars,
        metrics_pivoted.buy_hold_sharpe,
        metrics_pivoted.buy_hold_total_return,
        metrics_pivoted.flat_total_return,
        metrics_pivoted.excess_sharpe
    from versions
    left join metrics_pivoted
        on versions.version_id = metrics_pivoted.version_id

),

component_scores as (

    -- each score lies in [-1, 1]; NULL where the metric is undefined
    select
        *,
        brain.score_sharpe(sharpe) as score_sharpe,
        brain.score_sortino(sortino) as score_sortino,
        brain.score_calmar(calmar) as score_calmar,
        brain.score_profit_factor(profit_factor) as score_profit_factor,
        brain.score_hit_ratio(hit_ratio) as score_hit_ratio,
        brain.score_max_drawdown(max_drawdown) as score_max_drawdown,
        brain.has_evidence(round_trips, exposure) as has_evidence
    from versions_with_metrics

),

composite as (

    -- weighted sum; NULL without evidence or with an undefined component
    select
        *,
        brain.composite_score(
            sharpe, sortino, calmar, profit_factor, hit_ratio, max_drawdown,
            round_trips, exposure
        ) as composite_score
    from component_scores

)

select * from composite
