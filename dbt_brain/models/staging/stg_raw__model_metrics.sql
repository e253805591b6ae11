with

source as (

    select * from {{ source('raw', 'model_metrics') }}

),

renamed as (

    select
        -- ids
        version_id,
        scope as metric_scope,
        metric as metric_name,

        -- values: NaN means undefined, like NULL; ±Infinity stays
        nullif(value::double precision, 'NaN'::double precision) as metric_value,

        -- timestamps
        window_start,
        window_end,
        computed_at

    from source

)

select * from renamed
