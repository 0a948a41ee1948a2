-- Analyzer support: the extensions it reads (each optional) and a low-privilege role for EXPLAIN ANALYZE.
-- Every step tolerates a missing package or missing privileges (managed databases, non-superusers):
-- it then only leaves a NOTICE, and the analyzer reports the missing piece at call time.

DO $$
DECLARE
    ext text;
BEGIN
    FOREACH ext IN ARRAY ARRAY['pg_stat_statements', 'hypopg', 'pgstattuple'] LOOP
        BEGIN
            EXECUTE format('CREATE EXTENSION IF NOT EXISTS %I', ext);
        EXCEPTION
            WHEN undefined_file OR insufficient_privilege OR feature_not_supported
                 OR object_not_in_prerequisite_state OR invalid_parameter_value THEN
                RAISE NOTICE 'analyzer: extension % not created (%): %', ext, SQLSTATE, SQLERRM;
        END;
    END LOOP;
END
$$;

-- rentscout_explain: what analyzed statements run as when RENTSCOUT_ANALYZER_EXPLAIN_ROLE names it.
-- It can read every table (pg_read_all_data) and nothing more: no writes, no superuser-only
-- functions, no server files. The migrating user becomes a member so that SET ROLE works.
DO $$
BEGIN
    BEGIN
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'rentscout_explain') THEN
            CREATE ROLE rentscout_explain NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION;
        END IF;
    EXCEPTION
        WHEN insufficient_privilege OR duplicate_object THEN
            RAISE NOTICE 'analyzer: role rentscout_explain not created (%): %', SQLSTATE, SQLERRM;
            RETURN;
    END;
    BEGIN
        EXECUTE 'GRANT pg_read_all_data TO rentscout_explain';
    EXCEPTION
        WHEN insufficient_privilege OR undefined_object THEN
            RAISE NOTICE 'analyzer: pg_read_all_data not granted to rentscout_explain (%): %', SQLSTATE, SQLERRM;
    END;
    BEGIN
        EXECUTE format('GRANT rentscout_explain TO %I', current_user);
    EXCEPTION
        WHEN insufficient_privilege OR invalid_grant_operation THEN
            RAISE NOTICE 'analyzer: cannot grant rentscout_explain to % (%): %', current_user, SQLSTATE, SQLERRM;
    END;
END
$$;
