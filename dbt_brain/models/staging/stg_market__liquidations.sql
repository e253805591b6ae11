with

source as (

    -- rows that failed a data-quality rule are kept in raw.quarantine_liquidations and left
    -- out here, so no feature and no model learns from them (brain_lib.quality)
    select * from {{ source('market', 'liquidations') }} as source
    where not exists (
        select 1 from {{ source('quality', 'quarantine_liquidations') }} as q
        where q.exchange = source.exchange and q.symbol = source.symbol and q.liquidation_key = source.liquidation_key
    )

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
