{#-
    One row per model version with its out-of-sample metrics, the bounded component
    scores and the composite score. The formula is written here, once; it is
    explained in the docs block `composite_score_formula` (_marts__docs.md) and its
    weights are the dbt var `composite_weights` (dbt_project.yml).
-#}
{%- set weights = var('composite_weights') -%}
{%- set components = ['sharpe', 'sortino', 'calmar', 'profit_factor', 'hit_ratio', 'max_drawdown'] -%}
{%- for name in components if name not in weights -%}
    {{ exceptions.raise_compiler_error("var composite_weights has no weight for '" ~ name ~ "'") }}
{%- endfor -%}
{%- set weight_list = [] -%}
{%- for name in components -%}{%- do weight_list.append(weights[name]) -%}{%- endfor -%}
{%- set weight_sum = weight_list | sum -%}
{%- if (weight_sum - 1) | abs > 1e-9 -%}
    {{ exceptions.raise_compiler_error("var composite_weights must sum to 1 (got " ~ weight_sum ~ ")") }}
{%- endif -%}

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

    -- each score lies in [-1, 1]; NULL where the metric is undefined.
    -- PostgreSQL's tanh(±Infinity) is ±1, so infinite ratios need no guard;
    -- (pf - 1) / (pf + 1) is NaN for pf = Infinity, hence the case.
    select
        *,
        tanh(sharpe / 2) as score_sharpe,
        tanh(sortino / 3) as score_sortino,
        tanh(calmar / 3) as score_calmar,
        case
            when profit_factor = 'Infinity'::double precision then 1::double precision
            else (profit_factor - 1) / (profit_factor + 1)
        end as score_profit_factor,
        2 * hit_ratio - 1 as score_hit_ratio,
        1 + 2 * max_drawdown as score_max_drawdown
    from versions_with_metrics

),

composite as (

    -- weighted sum; an undefined component counts as 0 (neutral)
    select
        *,
        {% for name in components -%}
        {{ "" if loop.first else "+ " }}cast({{ weights[name] }} as double precision) * coalesce(score_{{ name }}, 0)
        {% endfor -%}
        as composite_score
    from component_scores

)

select * from composite
