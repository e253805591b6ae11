with

source as (

    select * from {{ source('raw', 'model_versions') }}

),

renamed as (

    select
        -- ids
        version_id,
        challenged_version_id,
        run_id as flow_run_id,
        exchange,
        symbol,
        timeframe,
        model_type,

        -- artifact
        artifact_uri,
        artifact_sha256,
        feature_set_hash,
        manifest,
        code_version,

        -- training window
        train_start,
        train_end,
        n_rows::integer as n_rows,

        -- timestamps
        created_at as trained_at,
        loaded_at

    from source

)

select * from renamed
