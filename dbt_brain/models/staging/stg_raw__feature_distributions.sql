with

source as (

    select * from {{ source('raw', 'feature_distributions') }}

),

renamed as (

    select
        -- ids
        version_id,
        computed_at,
        feature as feature_name,
        bin as bin_number,

        -- values
        lower_edge,
        upper_edge,
        train_count,
        recent_count,
        skipped_reason,

        -- windows
        train_start,
        train_end,
        window_start,
        window_end

    from source

)

select * from renamed
