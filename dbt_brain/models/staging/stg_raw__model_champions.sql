with

source as (

    select * from {{ source('raw', 'model_champions') }}

),

renamed as (

    select
        -- ids
        exchange,
        symbol,
        timeframe,
        model_type,
        version_id,
        event_id,

        -- timestamps
        since as champion_since

    from source

)

select * from renamed
