{#-
    Fails with one row per duplicated key when `combination_of_columns`, taken
    together, is not unique in `model` (a composite primary key as a data test).

        data_tests:
          - unique_combination_of_columns:
              arguments:
                combination_of_columns: [exchange, symbol, timeframe]
-#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
    {%- set key = combination_of_columns | join(', ') %}

    select
        {{ key }},
        count(*) as n_rows
    from {{ model }}
    group by {{ key }}
    having count(*) > 1
{% endtest %}
