{#-
    The warehouse's two roles, made and granted by every `dbt build` / `dbt run`
    (dbt_project.yml: warehouse_roles_ddl() on-run-start, warehouse_grants_ddl()
    on-run-end, and `+grants` on the marts).

    brain_writer  owns the schemas raw, staging, marts and brain and everything in them.
                  The flows connect as a login role that is a member of it (or as the
                  superuser): members act as the owner, so they write raw tables and
                  rebuild marts whoever built them last. NOLOGIN.
    brain_bi      read-only, for BI tools: USAGE on schema marts and SELECT on its
                  tables, nothing on raw, staging or brain; default_transaction_read_only
                  is on as a second guard (privileges are the first: it owns nothing and
                  may create nothing). NOLOGIN until `brain db login brain_bi` gives it a
                  password from BRAIN_BI_PASSWORD.

    Roles belong to the whole PostgreSQL cluster, not to one database: two databases'
    builds may race to create them, so a duplicate is caught and ignored. A rebuilt mart
    keeps brain_bi's SELECT: `+grants` grants it in the transaction that swaps the table
    in, and the on-run-end pass grants it again on every table of marts.
-#}

{% macro warehouse_roles_ddl() %}
do $roles$
begin
    if not exists (select from pg_roles where rolname = 'brain_writer') then
        begin
            create role brain_writer nologin;
        exception when duplicate_object or unique_violation then
            null;  -- another database's build made it a moment ago
        end;
    end if;
    if not exists (select from pg_roles where rolname = 'brain_bi') then
        begin
            create role brain_bi nologin;
            alter role brain_bi set default_transaction_read_only = on;
        exception when duplicate_object or unique_violation then
            null;
        end;
    end if;
    -- `create schema if not exists` checks CREATE on the database before it looks
    -- whether the schema exists; the owner or a superuser grants it once
    if not has_database_privilege('brain_writer', current_database(), 'create') then
        begin
            execute format('grant connect, create, temporary on database %I to brain_writer',
                           current_database());
        exception when insufficient_privilege then
            raise exception 'brain_writer lacks CREATE on database %: run GRANT CREATE ON DATABASE % TO brain_writer as its owner', current_database(), current_database();
        end;
    end if;
    -- the role that builds must be able to act as the owner brain_writer
    if not pg_has_role(current_user, 'brain_writer', 'member') then
        begin
            execute format('grant brain_writer to %I', current_user);
        exception when insufficient_privilege then
            raise exception 'the role running dbt (%) is not a member of brain_writer and may not join it: run GRANT brain_writer TO % as a superuser', current_user, current_user;
        end;
    end if;
end
$roles$;
{% endmacro %}


{% macro warehouse_grants_ddl() %}
select pg_advisory_xact_lock(hashtext('dbt_brain.warehouse_grants'));
do $grants$
declare
    obj record;
begin
    -- ownership: schemas, tables, views and functions of Brain's schemas go to
    -- brain_writer (identity sequences and indexes follow their tables)
    for obj in
        select nspname from pg_namespace
        where nspname in ('raw', 'staging', 'marts', 'brain')
          and nspowner <> 'brain_writer'::regrole
    loop
        execute format('alter schema %I owner to brain_writer', obj.nspname);
    end loop;
    for obj in
        select n.nspname, c.relname,
               case c.relkind when 'v' then 'view' when 'm' then 'materialized view'
                              else 'table' end as kind
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname in ('raw', 'staging', 'marts', 'brain')
          and c.relkind in ('r', 'p', 'v', 'm')
          and c.relowner <> 'brain_writer'::regrole
    loop
        execute format('alter %s %I.%I owner to brain_writer', obj.kind, obj.nspname, obj.relname);
    end loop;
    for obj in
        select p.oid::regprocedure as fn
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname in ('raw', 'staging', 'marts', 'brain')
          and p.proowner <> 'brain_writer'::regrole
    loop
        execute format('alter routine %s owner to brain_writer', obj.fn);
    end loop;

    -- brain_bi: the marts and nothing else (a schema not built yet is skipped)
    for obj in
        select nspname from pg_namespace where nspname in ('raw', 'staging', 'brain')
    loop
        execute format('revoke all on schema %I from brain_bi', obj.nspname);
    end loop;
    if exists (select from pg_namespace where nspname = 'marts') then
        grant usage on schema marts to brain_bi;
        grant select on all tables in schema marts to brain_bi;
        alter default privileges for role brain_writer in schema marts
            grant select on tables to brain_bi;
    end if;
end
$grants$;
{% endmacro %}
