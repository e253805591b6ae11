with

source as (

    select * from {{ source('raw', 'model_events') }}

),

renamed as (

    select
        -- ids
        event_id,
        run_id as flow_run_id,
        version_id,
        previous_version_id,
        exchange,
        symbol,
        timeframe,
        model_type,

        -- event
        event_type,
        event_type in ('manual_promotion', 'manual_rollback') as is_manual,
        reason,

        -- scores
        champion_score::double precision as champion_score,
        challenger_score::double precision as challenger_score,
        degradation::double precision as degradation,
        threshold::double precision as degradation_threshold,

        -- both sides' metrics and whatever else the registry recorded (jsonb)
        details,

        -- timestamps
        created_at as occurred_at

    from source

)

select * from renamed
