-- The analyzer's privilege boundary: rentscout_explain, the NOLOGIN role every caller-written
-- statement runs as (SET LOCAL ROLE inside a rolled-back transaction), may SELECT the application's
-- tables and nothing else. Migration 0004 gave it pg_read_all_data; that is taken back here.
-- Every step tolerates missing privileges (managed databases): it then leaves a NOTICE, and the
-- analyzer answers FAILED_PRECONDITION with the fix when it cannot switch to the role.
DO $$
DECLARE
    powerful text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'rentscout_explain') THEN
        BEGIN
            CREATE ROLE rentscout_explain NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION NOBYPASSRLS;
        EXCEPTION
            WHEN insufficient_privilege OR duplicate_object THEN
                RAISE NOTICE 'analyzer: role rentscout_explain not created (%): %', SQLSTATE, SQLERRM;
                RETURN;
        END;
    END IF;
    -- No predefined role that reads beyond the application's tables, reads files or signals backends.
    FOREACH powerful IN ARRAY ARRAY['pg_read_all_data', 'pg_write_all_data', 'pg_read_all_stats', 'pg_monitor',
                                    'pg_read_all_settings', 'pg_stat_scan_tables', 'pg_signal_backend',
                                    'pg_read_server_files', 'pg_write_server_files', 'pg_execute_server_program'] LOOP
        BEGIN
            EXECUTE format('REVOKE %I FROM rentscout_explain', powerful);
        EXCEPTION
            WHEN insufficient_privilege OR undefined_object THEN
                RAISE NOTICE 'analyzer: % not revoked from rentscout_explain (%): %', powerful, SQLSTATE, SQLERRM;
        END;
    END LOOP;
    BEGIN
        GRANT SELECT ON TABLE properties, export_runs TO rentscout_explain;
    EXCEPTION
        WHEN insufficient_privilege THEN
            RAISE NOTICE 'analyzer: SELECT not granted to rentscout_explain (%): %', SQLSTATE, SQLERRM;
    END;
    BEGIN
        EXECUTE format('GRANT rentscout_explain TO %I', current_user);
    EXCEPTION
        WHEN insufficient_privilege OR invalid_grant_operation THEN
            RAISE NOTICE 'analyzer: cannot grant rentscout_explain to % (%): %', current_user, SQLSTATE, SQLERRM;
    END;
END
$$;

-- HypoPG's functions change what the planner sees for the rest of a backend's life: only the
-- migrating (service) user may call them, never a caller's statement. Extension upgrades that
-- re-create functions re-grant them to PUBLIC; run this block again after `ALTER EXTENSION hypopg UPDATE`.
DO $$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN
        SELECT p.oid::regprocedure
        FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'hypopg'
        JOIN pg_catalog.pg_proc p ON p.oid = d.objid
        WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
          AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype = 'e'
    LOOP
        BEGIN
            EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', fn);
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', fn, current_user);
        EXCEPTION
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'analyzer: EXECUTE on % not restricted (%): %', fn, SQLSTATE, SQLERRM;
        END;
    END LOOP;
END
$$;

-- pg_qualstats (optional, needs shared_preload_libraries): the predicates SuggestIndexes' table mode reads.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_qualstats;
EXCEPTION
    WHEN undefined_file OR insufficient_privilege OR feature_not_supported
         OR object_not_in_prerequisite_state OR invalid_parameter_value THEN
        RAISE NOTICE 'analyzer: extension pg_qualstats not created (%): %', SQLSTATE, SQLERRM;
END
$$;
