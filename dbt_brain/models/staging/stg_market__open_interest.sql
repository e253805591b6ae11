with

source as (

    select * from {{ source('market', 'open_interest') }}

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
