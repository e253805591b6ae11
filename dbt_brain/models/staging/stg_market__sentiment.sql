with

source as (

    select * from {{ source('market', 'sentiment') }}

),

renamed as (

    select
        -- ids
        source as sentiment_source,
        item_key,
        -- what the item is about; blank means market-wide, like NULL
        nullif(trim(symbol), '') as symbol,

        -- values: NaN means unscored, like NULL
        text as item_text,
        nullif(score::double precision, 'NaN'::double precision) as score,

        -- timestamps
        ts as published_at,
        loaded_at

    from source

)

select * from renamed
