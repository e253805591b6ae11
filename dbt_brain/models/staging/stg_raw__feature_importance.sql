with

source as (

    select * from {{ source('raw', 'feature_importance') }}

),

renamed as (

    select
        -- ids
        version_id,
        kind as importance_kind,
        method as importance_method,
        feature as feature_name,

        -- values: NaN would poison averages and slopes; it means "undefined", like NULL
        nullif(importance::double precision, 'NaN'::double precision) as importance,
        nullif(normalised::double precision, 'NaN'::double precision) as normalised_importance,
        rank as importance_rank,
        skipped_reason,
        n_rows,

        -- timestamps
        window_start,
        window_end,
        computed_at

    from source

)

select * from renamed
