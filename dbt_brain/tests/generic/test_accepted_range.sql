{#-
    Fails with every row whose `column_name` lies outside [min_value, max_value]
    (bounds inclusive; either bound may be left out). NULL passes: pair it with
    not_null where NULL is not allowed. NaN fails (PostgreSQL sorts NaN above
    every number, so any max_value rejects it).

        data_tests:
          - accepted_range:
              arguments:
                min_value: -1
                max_value: 1
-#}
{% test accepted_range(model, column_name, min_value=none, max_value=none) %}
    {%- if min_value is none and max_value is none -%}
        {{ exceptions.raise_compiler_error("accepted_range needs min_value, max_value or both") }}
    {%- endif %}

    select {{ column_name }}
    from {{ model }}
    where
        {{ column_name }} is not null
        and (
            false
            {%- if min_value is not none %}
            or {{ column_name }} < {{ min_value }}
            {%- endif %}
            {%- if max_value is not none %}
            or {{ column_name }} > {{ max_value }}
            {%- endif %}
        )
{% endtest %}
