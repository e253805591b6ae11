with

source as (

    -- rows that failed a data-quality rule are kept in raw.quarantine_funding_rates and left
    -- out here, so no feature and no model learns from them (brain_lib.quality)
    select * from {{ source('market', 'funding_rates') }} as source
    where not exists (
        select 1 from {{ source('quality', 'quarantine_funding_rates') }} as q
        where q.exchange = source.exchange and q.symbol = source.symbol and q.ts = source.ts
    )

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
