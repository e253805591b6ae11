{#-
    Fails with every row of `model` for which `expression` (a SQL boolean expression
    over its columns) is not true: false, and also NULL, so write the NULL case into
    the expression when NULL is fine.

        data_tests:
          - expression_is_true:
              arguments:
                expression: "valid_to is null or valid_to > valid_from"
-#}
{% test expression_is_true(model, expression) %}

    select *
    from {{ model }}
    where not coalesce(({{ expression }}), false)

{% endtest %}
