with

source as (

    select * from {{ source('raw', 'model_selections') }}

),

renamed as (

    select
        -- ids
        selection_id,
        version_id,
        current_version_id,
        exchange,
        symbol,
        timeframe,

        -- decision
        kind,
        regime,
        regime_source,
        preferred_model_type,
        model_type,
        is_fallback,
        learned_model_type,
        switch as is_switch,
        reason,

        -- evidence
        volatility::double precision as volatility,
        volatility_percentile::double precision as volatility_percentile,
        regime_run_bars,
        confidence::double precision as confidence,
        current_confidence::double precision as current_confidence,
        details,

        -- timestamps
        decided_at,
        (decided_at at time zone 'UTC')::date as decided_on,
        as_of_bar,
        created_at as recorded_at

    from source

)

select * from renamed
