with

source as (

    -- rows that failed a data-quality rule are kept in raw.quarantine_open_interest and left
    -- out here, so no feature and no model learns from them (brain_lib.quality)
    select * from {{ source('market', 'open_interest') }} as source
    where not exists (
        select 1 from {{ source('quality', 'quarantine_open_interest') }} as q
        where q.exchange = source.exchange and q.symbol = source.symbol and q.period = source.period and q.ts = source.ts
    )

),

renamed as (

    select
        -- ids
        exchange,
        symbol,
        period as sample_period,

        -- values: NaN means unknown, like NULL
        nullif(open_interest_amount::double precision, 'NaN'::double precision)
            as open_interest_amount,
        nullif(open_interest_value::double precision, 'NaN'::double precision)
            as open_interest_value,

        -- timestamps
        ts as sampled_at,
        loaded_at

    from source

)

select * from renamed
