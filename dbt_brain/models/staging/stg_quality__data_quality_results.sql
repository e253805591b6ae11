with

source as (

    select * from {{ source('quality', 'data_quality_results') }}

),

renamed as (

    select
        -- ids
        result_id,
        run_id,

        -- what was validated
        suite,
        table_name as source_table,
        exchange,
        symbol,
        timeframe,
        batch_start,
        batch_end,

        -- the expectation and its outcome
        expectation as expectation_type,
        column_name,
        severity,
        description as expectation_description,
        success as passed,
        observed_value,
        unexpected_count as unexpected_rows,
        element_count as batch_rows,
        exception_message,

        -- timestamps
        validated_at,
        (validated_at at time zone 'UTC')::date as validated_on

    from source

)

select * from renamed
