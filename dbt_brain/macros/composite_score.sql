{#-
    The composite score, as SQL functions in the schema `brain`: the ONE place where
    the formula is written. Explained in the docs block `composite_score_formula`
    (models/marts/_marts__docs.md); weights are the dbt var `composite_weights` and the
    evidence rule the vars `composite_min_round_trips` and `composite_min_exposure`
    (dbt_project.yml), baked into the functions when they are (re)created.

        brain.score_sharpe(double precision)         tanh(sharpe / 2)
        brain.score_sortino(double precision)        tanh(sortino / 3)
        brain.score_calmar(double precision)         tanh(calmar / 3)
        brain.score_profit_factor(double precision)  (pf - 1) / (pf + 1); 1 for pf = Infinity
        brain.score_hit_ratio(double precision)      2 * hit_ratio - 1
        brain.score_max_drawdown(double precision)   1 + 2 * max_drawdown
        brain.has_evidence(round_trips, exposure)    round_trips >= min and exposure >= min
        brain.evidence_rule()                        the rule, as text
        brain.composite_score(sharpe, sortino, calmar, profit_factor, hit_ratio,
                              max_drawdown, round_trips, exposure)
            NULL unless has_evidence(...) and every component is defined;
            otherwise Σ wᵢ · scoreᵢ

    All take and return double precision (has_evidence: boolean, evidence_rule: text),
    are `language sql immutable parallel safe` (so the planner inlines them) and map an
    undefined metric (NULL, or NaN) to NULL.

    "No evidence" is what a model that never trades, or barely, shows: it is not scored
    (NULL), so it can neither look good (a zero drawdown is not a virtue of a model that
    does nothing) nor win by default. The registry refuses to promote a challenger
    without a score (docs/registry.md).

    Who uses them: marts.model_composite_scores, and brain_lib.registry, which judges a
    challenger with `select brain.composite_score(%s, ... 8 arguments)`.

    composite_score_ddl() returns the DDL; raw_schema.sql's create_raw_tables() and the
    on-run-start hook (dbt_project.yml) run it, so every dbt invocation redefines the
    functions from the vars it was given. Do not pass other composite_* vars with
    --vars to a run against the warehouse: the override would become the formula that
    Python judges challengers with (README.md, "The composite score").
-#}

{% macro composite_score_components() %}
    {{ return(['sharpe', 'sortino', 'calmar', 'profit_factor', 'hit_ratio', 'max_drawdown']) }}
{% endmacro %}


{#- The var composite_weights, checked: a weight for every component, summing to 1. -#}
{% macro composite_score_weights() %}
    {%- set weights = var('composite_weights') -%}
    {%- set components = composite_score_components() -%}
    {%- for name in components if name not in weights -%}
        {{ exceptions.raise_compiler_error("var composite_weights has no weight for '" ~ name ~ "'") }}
    {%- endfor -%}
    {%- set weight_list = [] -%}
    {%- for name in components -%}{%- do weight_list.append(weights[name]) -%}{%- endfor -%}
    {%- set weight_sum = weight_list | sum -%}
    {%- if (weight_sum - 1) | abs > 1e-9 -%}
        {{ exceptions.raise_compiler_error("var composite_weights must sum to 1 (got " ~ weight_sum ~ ")") }}
    {%- endif -%}
    {{ return(weights) }}
{% endmacro %}


{% macro composite_score_ddl() %}
{%- set weights = composite_score_weights() -%}
{%- set evidence = composite_evidence() -%}
-- concurrent dbt runs redefine the functions one after the other (raw_schema.sql)
select pg_advisory_xact_lock(hashtext('dbt_brain.raw_schema_ddl'));

create schema if not exists brain;

-- The components: bounded transforms into [-1, 1]. An undefined metric (NULL, or NaN,
-- which nullif turns into NULL) gives NULL. PostgreSQL's tanh(±Infinity) is ±1, so
-- infinite ratios need no guard; (pf - 1) / (pf + 1) is NaN for pf = Infinity, hence
-- the case.
create or replace function brain.score_sharpe(sharpe double precision)
    returns double precision
    language sql immutable parallel safe
    return tanh(nullif(sharpe, 'NaN') / 2);

create or replace function brain.score_sortino(sortino double precision)
    returns double precision
    language sql immutable parallel safe
    return tanh(nullif(sortino, 'NaN') / 3);

create or replace function brain.score_calmar(calmar double precision)
    returns double precision
    language sql immutable parallel safe
    return tanh(nullif(calmar, 'NaN') / 3);

create or replace function brain.score_profit_factor(profit_factor double precision)
    returns double precision
    language sql immutable parallel safe
    return case
        when profit_factor = 'Infinity'::double precision then 1::double precision
        else (nullif(profit_factor, 'NaN') - 1) / (profit_factor + 1)
    end;

create or replace function brain.score_hit_ratio(hit_ratio double precision)
    returns double precision
    language sql immutable parallel safe
    return 2 * nullif(hit_ratio, 'NaN') - 1;

create or replace function brain.score_max_drawdown(max_drawdown double precision)
    returns double precision
    language sql immutable parallel safe
    return 1 + 2 * nullif(max_drawdown, 'NaN');

-- Evidence: a backtest is scored only when it traded at least
-- composite_min_round_trips times and held a position on at least composite_min_exposure
-- of its bars. NULL counts as none.
create or replace function brain.has_evidence(
    round_trips double precision,
    exposure double precision
)
    returns boolean
    language sql immutable parallel safe
    return coalesce(nullif(round_trips, 'NaN'), 0) >= {{ evidence.min_round_trips }}
        and coalesce(nullif(exposure, 'NaN'), 0) >= {{ evidence.min_exposure }};

create or replace function brain.evidence_rule()
    returns text
    language sql immutable parallel safe
    return 'at least {{ evidence.min_round_trips }} round trips and a position on at least {{ evidence.min_exposure }} of the bars';

-- the six-argument composite of raw schema v5 and before scored evidence-free backtests
drop function if exists brain.composite_score(
    double precision, double precision, double precision,
    double precision, double precision, double precision
);

-- The weighted sum, NULL without evidence or with an undefined component.
-- Weights from var composite_weights: {% for name in composite_score_components() %}{{ name }} {{ weights[name] }}{{ ", " if not loop.last }}{% endfor %}.
create or replace function brain.composite_score(
    sharpe double precision,
    sortino double precision,
    calmar double precision,
    profit_factor double precision,
    hit_ratio double precision,
    max_drawdown double precision,
    round_trips double precision,
    exposure double precision
)
    returns double precision
    language sql immutable parallel safe
    return case
        when brain.has_evidence(round_trips, exposure) then
        {% for name in composite_score_components() -%}
        {{ "" if loop.first else "+ " }}cast({{ weights[name] }} as double precision) * brain.score_{{ name }}({{ name }})
        {% endfor -%}
    end;

comment on function brain.composite_score(
    double precision, double precision, double precision, double precision,
    double precision, double precision, double precision, double precision
) is 'Composite score of a model version from its out-of-sample metrics, in [-1, 1], NULL without evidence ({{ evidence.min_round_trips }} round trips, {{ evidence.min_exposure }} exposure) or with an undefined metric (dbt_brain, macros/composite_score.sql). Weights: {% for name in composite_score_components() %}{{ name }} {{ weights[name] }}{{ ", " if not loop.last }}{% endfor %}.';
{% endmacro %}


{#- The evidence vars, checked: a round-trip count >= 1 and an exposure in [0, 1]. -#}
{% macro composite_evidence() %}
    {%- set rt = var('composite_min_round_trips') -%}
    {%- set exposure = var('composite_min_exposure') -%}
    {%- if rt is not number or rt < 1 or (rt | int) != rt -%}
        {{ exceptions.raise_compiler_error("var composite_min_round_trips must be an integer >= 1 (got " ~ rt ~ ")") }}
    {%- endif -%}
    {%- if exposure is not number or exposure < 0 or exposure > 1 -%}
        {{ exceptions.raise_compiler_error("var composite_min_exposure must lie in [0, 1] (got " ~ exposure ~ ")") }}
    {%- endif -%}
    {{ return({'min_round_trips': rt | int, 'min_exposure': exposure}) }}
{% endmacro %}
