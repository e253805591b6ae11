with

source as (

    select * from {{ source('market', 'liquidations') }}

),

renamed as (

    select
        -- ids
        exchange,
        symbol,
        liquidation_key,

        -- side of the liquidated position, normalised: 'long', 'short' or as given
        lower(trim(side)) as side,

        -- values: NaN means unknown, like NULL
        nullif(price::double precision, 'NaN'::double precision) as price,
        nullif(quantity::double precision, 'NaN'::double precision) as quantity,
        -- the exchange's notional; when it gives none, price × quantity
        coalesce(
            nullif(notional::double precision, 'NaN'::double precision),
            nullif(price::double precision, 'NaN'::double precision)
            * nullif(quantity::double precision, 'NaN'::double precision)
        ) as notional,

        -- timestamps
        ts as liquidated_at,
        loaded_at

    from source

)

select * from renamed
