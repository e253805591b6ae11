{#-
    Population stability index of every feature of a champion between its training
    window and the recent window of a nightly analysis. One row per (version_id,
    computed_at, feature_name).

    psi = Σ_b (r_b − t_b) · ln(r_b / t_b), over the bins b of the feature (deciles of the
    training window, raw.feature_distributions), with t_b = max(train_count_b /
    Σ train_count, ε) and r_b = max(recent_count_b / Σ recent_count, ε), ε = var
    psi_epsilon (1e-4); rounded to 8 decimals. NULL, with skipped_reason, for a feature
    that could not be binned or a window with no rows.
    drift_level: 'stable' (psi < var psi_moderate, 0.1), 'moderate' (< var psi_major,
    0.25), 'major' otherwise; NULL when psi is NULL.
-#}

{%- set eps = var('psi_epsilon', 0.0001) -%}
{%- set moderate = var('psi_moderate', 0.1) -%}
{%- set major = var('psi_major', 0.25) -%}

with

distributions as (

    select * from {{ ref('stg_raw__feature_distributions') }}

),

versions as (

    select version_id, exchange, symbol, timeframe, model_type
    from {{ ref('stg_raw__model_versions') }}

),

binned as (

    select
        *,
        sum(train_count) over per_feature as train_total,
        sum(recent_count) over per_feature as recent_total
    from distributions
    where bin_number > 0
    window per_feature as (partition by version_id, computed_at, feature_name)

),

shares as (

    select
        *,
        greatest(train_count::double precision / nullif(train_total, 0), {{ eps }}) as t,
        greatest(recent_count::double precision / nullif(recent_total, 0), {{ eps }}) as r
    from binned

),

psi as (

    select
        version_id,
        computed_at,
        feature_name,
        count(*)::integer as n_bins,
        max(train_total)::bigint as train_rows,
        max(recent_total)::bigint as recent_rows,
        case when max(train_total) > 0 and max(recent_total) > 0 then
            round(sum((r - t) * ln(r / t))::numeric, 8)::double precision
        end as psi,
        case
            when max(train_total) = 0 then 'no rows in the training window'
            when max(recent_total) = 0 then 'no rows in the recent window'
        end as skipped_reason,
        min(window_start) as window_start,
        max(window_end) as window_end
    from shares
    group by version_id, computed_at, feature_name

),

skipped as (

    select
        version_id,
        computed_at,
        feature_name,
        0 as n_bins,
        0::bigint as train_rows,
        0::bigint as recent_rows,
        null::double precision as psi,
        skipped_reason,
        window_start,
        window_end
    from distributions
    where bin_number = 0

),

combined as (

    select * from psi
    union all
    select * from skipped

),

final as (

    select
        versions.exchange,
        versions.symbol,
        versions.timeframe,
        versions.model_type,
        combined.version_id,
        combined.computed_at,
        combined.feature_name,
        combined.n_bins,
        combined.train_rows,
        combined.recent_rows,
        combined.psi,
        case
            when combined.psi is null then null
            when combined.psi < {{ moderate }} then 'stable'
            when combined.psi < {{ major }} then 'moderate'
            else 'major'
        end as drift_level,
        combined.skipped_reason,
        combined.window_start,
        combined.window_end,
        dense_rank() over (
            partition by combined.version_id order by combined.computed_at desc
        ) = 1 as is_latest
    from combined
    inner join versions on versions.version_id = combined.version_id

)

select * from final
