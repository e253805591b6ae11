{#-
    Custom schemas are used verbatim: `+schema: marts` builds into `marts`, not
    `<target schema>_marts` (dbt's default). Models without a custom schema land in
    the target schema of the profile (`analytics`).
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
