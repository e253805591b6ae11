with

source as (

    select * from {{ source('raw', 'ohlcv') }}

),

renamed as (

    select
        -- ids
        exchange,
        symbol,
        timeframe,

        -- prices
        open::double precision as open,
        high::double precision as high,
        low::double precision as low,
        close::double precision as close,

        -- quantities
        volume::double precision as volume,

        -- timestamps
        ts as opened_at,
        loaded_at

    from source

)

select * from renamed
