with

source as (

    select * from {{ source('market', 'funding_rates') }}

),

renamed as (

    select
        -- ids
        exchange,
        symbol,

        -- values: NaN means unknown, like NULL
        nullif(funding_rate::double precision, 'NaN'::double precision) as funding_rate,
        nullif(mark_price::double precision, 'NaN'::double precision) as mark_price,

        -- timestamps
        ts as funding_at,
        loaded_at

    from source

)

select * from renamed
