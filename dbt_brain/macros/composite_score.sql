{#-
    The composite score, as SQL functions in the schema `brain`: the ONE place where
    the formula is written. Explained in the docs block `composite_score_formula`
    (models/marts/_marts__docs.md); weights are the dbt var `composite_weights`
    (dbt_project.yml), baked into brain.composite_score when it is (re)created.

        brain.score_sharpe(double precision)         tanh(sharpe / 2)
        brain.score_sortino(double precision)        tanh(sortino / 3)
        brain.score_calmar(double precision)         tanh(calmar / 3)
        brain.score_profit_factor(double precision)  (pf - 1) / (pf + 1); 1 for pf = Infinity
        brain.score_hit_ratio(double precision)      2 * hit_ratio - 1
        brain.score_max_drawdown(double precision)   1 + 2 * max_drawdown
        brain.composite_score(sharpe, sortino, calmar, profit_factor, hit_ratio,
                              max_drawdown)          Σ wᵢ · coalesce(scoreᵢ, 0)

    All take and return double precision, are `language sql immutable parallel safe`
    (so the planner inlines them) and map an undefined metric (NULL, or NaN) to NULL.

    Who uses them: marts.model_composite_scores, and brain_lib.registry, which judges a
    challenger with `select brain.composite_score(%s, %s, %s, %s, %s, %s)`.

    composite_score_ddl() returns the DDL; raw_schema.sql's create_raw_tables() and the
    on-run-start hook (dbt_project.yml) run it, so every dbt invocation redefines the
    functions from the weights it was given. Do not pass other composite_weights with
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

-- The weighted sum; an undefined component counts 0 (neutral), so it is never NULL.
-- Weights from var composite_weights: {% for name in composite_score_components() %}{{ name }} {{ weights[name] }}{{ ", " if not loop.last }}{% endfor %}.
create or replace function brain.composite_score(
    sharpe double precision,
    sortino double precision,
    calmar double precision,
    profit_factor double precision,
    hit_ratio double precision,
    max_drawdown double precision
)
    returns double precision
    language sql immutable parallel safe
    return
        {% for name in composite_score_components() -%}
        {{ "" if loop.first else "+ " }}cast({{ weights[name] }} as double precision) * coalesce(brain.score_{{ name }}({{ name }}), 0)
        {% endfor -%}
    ;

comment on function brain.composite_score(
    double precision, double precision, double precision,
    double precision, double precision, double precision
) is 'Composite score of a model version from its out-of-sample metrics, in [-1, 1] (dbt_brain, macros/composite_score.sql). Weights: {% for name in composite_score_components() %}{{ name }} {{ weights[name] }}{{ ", " if not loop.last }}{% endfor %}.';
{% endmacro %}
