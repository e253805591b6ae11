{#-
    One row per model version with its out-of-sample metrics, the bounded component
    scores and the composite score. The formula is NOT written here: the columns call
    the SQL functions brain.score_* and brain.composite_score (macros/composite_score.sql,
    created by the on-run-start hook), the same functions Python uses to judge a
    challenger. It is explained in the docs block `composite_score_formula`
    (_marts__docs.md); its weights are the dbt var `composite_weights` (dbt_project.yml).
-#}
{#- validates the weights at compile time too, and records them in the compiled SQL -#}
{%- set weights = composite_score_weights() %}
-- composite weights: {% for name in composite_score_components() %}{{ name }} {{ weights[name] }}{{ ", " if not loop.last }}{% endfor %}

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
        max(metric_value) filter (where metric_name = 'sharpe') as sharpe,
        max(metric_value) filter (where metric_name = 'sortino') as sortino,
        max(metric_value) filter (where metric_name = 'hit_ratio') as hit_ratio,
        max(metric_value) filter (where metric_name = 'profit_factor') as profit_factor,
        max(metric_value) filter (where metric_name = 'max_drawdown') as max_drawdown,
        max(metric_value) filter (where metric_name = 'calmar') as calmar,
        max(metric_value) filter (where metric_name = 'annualised_return') as annualised_return,
        max(metric_value) filter (where metric_name = 'n_bars') as n_bars
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
        metrics_pivoted.sharpe,
        metrics_pivoted.sortino,
        metrics_pivoted.hit_ratio,
        metrics_pivoted.profit_factor,
        metrics_pivoted.max_drawdown,
        metrics_pivoted.calmar,
        metrics_pivoted.annualised_return,
        metrics_pivoted.n_bars::integer as n_bars
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
        brain.score_max_drawdown(max_drawdown) as score_max_drawdown
    from versions_with_metrics

),

composite as (

    -- weighted sum; an undefined component counts as 0 (neutral)
    select
        *,
        brain.composite_score(
            sharpe, sortino, calmar, profit_factor, hit_ratio, max_drawdown
        ) as composite_score
    from component_scores

)

select * from composite
