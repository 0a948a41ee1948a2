-- Cache invalidation as a change log (replaces the NOTIFY payloads of 0003).
--
-- Every statement that changes `properties` appends one row naming the cache tags it touched to
-- `cache_changes`, in its own transaction (so the row exists exactly when the change committed).
-- NOTIFY `rentscout_cache` is only a doorbell: its payload is empty and never read; the cache-query
-- service reads the rows after the last position it applied (see cache_service/changes.py).
--
-- Only the migrating role writes the log: the trigger function is SECURITY DEFINER (owned by that role,
-- search_path pinned to pg_catalog, this schema, then pg_temp), and nobody else is granted anything on
-- the table or its sequence. A role that may write `properties` gets its changes logged through the
-- trigger; a role that may only NOTIFY rings the doorbell and changes nothing.
--
-- Tags (what cache_service/keys.py calls them): `city:<name>` (everything about a city),
-- `popular:<name>` (only its popular lists: a views or title change), `cities` and `property_types`
-- (counts moved), `*` (everything: TRUNCATE, or more than 1000 cities in one statement).
-- Rows are pruned by age by the service (`CACHE_CHANGE_RETENTION_SECONDS`); the newest is always kept.

CREATE TABLE IF NOT EXISTS cache_changes (
    seq  bigserial PRIMARY KEY,
    tags text[] NOT NULL,
    at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS cache_changes_at_idx ON cache_changes (at);
REVOKE ALL ON TABLE cache_changes FROM PUBLIC;
REVOKE ALL ON SEQUENCE cache_changes_seq_seq FROM PUBLIC;

CREATE OR REPLACE FUNCTION rentscout_cache_log() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    cities text[];
    counts boolean;
    prices boolean;
    tags   text[];
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO cache_changes (tags) VALUES (ARRAY['*']);
        PERFORM pg_notify('rentscout_cache', '');
        RETURN NULL;
    END IF;

    -- EXECUTE: plan each statement's transition table afresh (see 0003)
    IF TG_OP IN ('INSERT', 'DELETE') THEN
        EXECUTE format('SELECT array_agg(DISTINCT city), coalesce(bool_or(is_active), false) FROM %I',
                       CASE TG_OP WHEN 'INSERT' THEN 'new_rows' ELSE 'old_rows' END)
          INTO cities, counts;
        prices := counts;
    ELSE
        EXECUTE $sql$
        WITH changed AS (
            SELECT o.city AS old_city, n.city AS new_city,
                   (o.id IS NULL OR n.id IS NULL
                    OR (o.city, o.property_type, o.is_active) IS DISTINCT FROM (n.city, n.property_type, n.is_active)
                   ) AS moved,
                   (o.id IS NULL OR n.id IS NULL
                    OR (o.city, o.property_type, o.is_active, o.price, o.area)
                       IS DISTINCT FROM (n.city, n.property_type, n.is_active, n.price, n.area)
                   ) AS repriced
              FROM old_rows o
              FULL JOIN new_rows n ON n.id = o.id
             WHERE o.id IS NULL OR n.id IS NULL OR o IS DISTINCT FROM n
        )
        SELECT (SELECT array_agg(DISTINCT c) FROM changed, unnest(ARRAY[old_city, new_city]) AS c WHERE c IS NOT NULL),
               coalesce(bool_or(moved), false), coalesce(bool_or(repriced), false)
          FROM changed
        $sql$ INTO cities, counts, prices;
    END IF;

    IF cities IS NULL THEN  -- no row really changed
        RETURN NULL;
    END IF;
    IF cardinality(cities) > 1000 THEN
        tags := ARRAY['*'];
    ELSE
        -- a change that cannot move prices or counts (views, titles) only touches the popular lists
        SELECT array_agg(CASE WHEN prices OR counts THEN 'city:' ELSE 'popular:' END || c) INTO tags FROM unnest(cities) AS c;
        IF counts THEN
            tags := tags || ARRAY['cities', 'property_types'];
        END IF;
    END IF;
    INSERT INTO cache_changes (tags) VALUES (tags);
    PERFORM pg_notify('rentscout_cache', '');
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION rentscout_cache_log() FROM PUBLIC;
-- A definer function must not resolve names through schemas the invoker controls: pg_temp (searched
-- first unless placed) would let a session's temporary table named cache_changes take the rows.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION rentscout_cache_log() SET search_path = pg_catalog, %I, pg_temp', current_schema());
END
$$;

DROP TRIGGER IF EXISTS properties_cache_notify_insert ON properties;
DROP TRIGGER IF EXISTS properties_cache_notify_update ON properties;
DROP TRIGGER IF EXISTS properties_cache_notify_delete ON properties;
DROP TRIGGER IF EXISTS properties_cache_notify_truncate ON properties;
DROP FUNCTION IF EXISTS rentscout_cache_notify();

CREATE TRIGGER properties_cache_log_insert
    AFTER INSERT ON properties REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rentscout_cache_log();
CREATE TRIGGER properties_cache_log_update
    AFTER UPDATE ON properties REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rentscout_cache_log();
CREATE TRIGGER properties_cache_log_delete
    AFTER DELETE ON properties REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rentscout_cache_log();
CREATE TRIGGER properties_cache_log_truncate
    AFTER TRUNCATE ON properties
    FOR EACH STATEMENT EXECUTE FUNCTION rentscout_cache_log();
