{#-
    Did the ranking of a champion's features shift between training time and recent
    data? One row per (version_id, method, nightly computed_at): the version's
    training-time importance against one nightly recomputation.

    rank_correlation: Spearman correlation of the two rankings over the features ranked
        in both (ranks re-numbered within that common set); NULL with fewer than 3.
    top_k_jaccard: |top-k training ∩ top-k recent| / |top-k training ∪ top-k recent|,
        k = var feature_shift_top_k (10), on each ranking's own ranks.
    moved_features: features whose normalised importance moved by more than var
        feature_shift_threshold (0.1) in absolute value; a feature ranked on one side
        only counts as 0 on the other.
    shift_flag: rank_correlation < var feature_shift_min_rank_corr (0.5), or
        top_k_jaccard < var feature_shift_min_jaccard (0.4), or any moved feature.
    symbol_shift_flag (latest computation of each version only, NULL otherwise): any
        shift_flag of the symbol's latest comparisons by the methods in var
        feature_shift_flag_methods (['shap']); what nightly-feature-analysis marks for
        retraining.
-#}

{%- set top_k = var('feature_shift_top_k', 10) -%}
{%- set threshold = var('feature_shift_threshold', 0.1) -%}
{%- set min_rank_corr = var('feature_shift_min_rank_corr', 0.5) -%}
{%- set min_jaccard = var('feature_shift_min_jaccard', 0.4) -%}
{%- set flag_methods = var('feature_shift_flag_methods', ['shap']) -%}

with

importance as (

    select * from {{ ref('stg_raw__feature_importance') }}
    where importance_rank is not null

),

versions as (

    select version_id, exchange, symbol, timeframe, model_type
    from {{ ref('stg_raw__model_versions') }}

),

champions as (

    select version_id from {{ ref('stg_raw__model_champions') }}

),

training_latest as (

    -- a version has one training-time computation; take the latest if ever more
    select
        *,
        rank() over (
            partition by version_id, importance_method order by computed_at desc
        ) as nth
    from importance
    where importance_kind = 'training'

),

training as (

    select version_id, importance_method, feature_name, normalised_importance, importance_rank
    from training_latest
    where nth = 1

),

nightly as (

    select version_id, importance_method, computed_at, feature_name, normalised_importance,
        importance_rank
    from importance
    where importance_kind = 'nightly'

),

comparisons as (

    select distinct nightly.version_id, nightly.importance_method, nightly.computed_at
    from nightly
    inner join training
        on training.version_id = nightly.version_id
        and training.importance_method = nightly.importance_method

),

features as (

    select version_id, importance_method, computed_at, feature_name from nightly
    where (version_id, importance_method) in (select version_id, importance_method from training)
    union
    select comparisons.version_id, comparisons.importance_method, comparisons.computed_at,
        training.feature_name
    from comparisons
    inner join training
        on training.version_id = comparisons.version_id
        and training.importance_method = comparisons.importance_method

),

paired as (

    select
        features.version_id,
        features.importance_method,
        features.computed_at,
        features.feature_name,
        training.normalised_importance as training_normalised,
        training.importance_rank as training_rank,
        nightly.normalised_importance as recent_normalised,
        nightly.importance_rank as recent_rank
    from features
    left join training
        on training.version_id = features.version_id
        and training.importance_method = features.importance_method
        and training.feature_name = features.feature_name
    left join nightly
        on nightly.version_id = features.version_id
        and nightly.importance_method = features.importance_method
        and nightly.computed_at = features.computed_at
        and nightly.feature_name = features.feature_name

),

reranked as (

    select
        *,
        case when training_rank is not null and recent_rank is not null then
            rank() over (
                partition by version_id, importance_method, computed_at,
                    (training_rank is not null and recent_rank is not null)
                order by training_rank
            )
        end as common_training_rank,
        case when training_rank is not null and recent_rank is not null then
            rank() over (
                partition by version_id, importance_method, computed_at,
                    (training_rank is not null and recent_rank is not null)
                order by recent_rank
            )
        end as common_recent_rank,
        abs(coalesce(recent_normalised, 0) - coalesce(training_normalised, 0))
            as normalised_move
    from paired

),

compared as (

    select
        version_id,
        importance_method,
        computed_at,
        count(common_training_rank) as n_common,
        corr(common_training_rank, common_recent_rank) as rank_corr_raw,
        count(*) filter (where training_rank <= {{ top_k }} and recent_rank <= {{ top_k }})
            as top_k_both,
        count(*) filter (where training_rank <= {{ top_k }} or recent_rank <= {{ top_k }})
            as top_k_either,
        count(*) filter (where normalised_move > {{ threshold }}) as n_moved,
        string_agg(feature_name, ',' order by normalised_move desc, feature_name)
            filter (where normalised_move > {{ threshold }}) as moved_features,
        max(normalised_move) as max_normalised_move
    from reranked
    group by version_id, importance_method, computed_at

),

measured as (

    select
        compared.version_id,
        compared.importance_method,
        compared.computed_at,
        compared.n_common::integer as n_common,
        case when compared.n_common >= 3 then
            round(compared.rank_corr_raw::numeric, 8)::double precision
        end as rank_correlation,
        round(
            (compared.top_k_both::numeric / nullif(compared.top_k_either, 0)), 8
        )::double precision as top_k_jaccard,
        compared.n_moved::integer as n_moved,
        compared.moved_features,
        round(compared.max_normalised_move::numeric, 8)::double precision
            as max_normalised_move,
        row_number() over (
            partition by compared.version_id, compared.importance_method
            order by compared.computed_at desc
        ) = 1 as is_latest
    from compared

),

flagged as (

    select
        measured.*,
        concat_ws('; ',
            case when measured.rank_correlation < {{ min_rank_corr }}
                then 'rank correlation ' || round(measured.rank_correlation::numeric, 2)
                    || ' < {{ min_rank_corr }}' end,
            case when measured.top_k_jaccard < {{ min_jaccard }}
                then 'top-{{ top_k }} overlap ' || round(measured.top_k_jaccard::numeric, 2)
                    || ' < {{ min_jaccard }}' end,
            case when measured.n_moved > 0
                then 'moved > {{ threshold }}: ' || measured.moved_features end
        ) as shift_reason,
        (
            coalesce(measured.rank_correlation < {{ min_rank_corr }}, false)
            or coalesce(measured.top_k_jaccard < {{ min_jaccard }}, false)
            or measured.n_moved > 0
        ) as shift_flag
    from measured

),

final as (

    select
        versions.exchange,
        versions.symbol,
        versions.timeframe,
        versions.model_type,
        flagged.version_id,
        flagged.importance_method,
        flagged.computed_at,
        flagged.n_common,
        flagged.rank_correlation,
        flagged.top_k_jaccard,
        flagged.n_moved,
        flagged.moved_features,
        flagged.max_normalised_move,
        flagged.shift_flag,
        nullif(flagged.shift_reason, '') as shift_reason,
        flagged.is_latest,
        case when flagged.is_latest then
            coalesce(
                bool_or(flagged.shift_flag) filter (
                    where flagged.importance_method in (
                        {%- for m in flag_methods %}'{{ m }}'{{ ", " if not loop.last }}{% endfor -%}
                    )
                ) over (
                    partition by versions.exchange, versions.symbol, versions.timeframe,
                        flagged.is_latest
                ),
                false
            )
        end as symbol_shift_flag,
        flagged.version_id in (select version_id from champions) as is_champion
    from flagged
    inner join versions on versions.version_id = flagged.version_id

)

select * from final
