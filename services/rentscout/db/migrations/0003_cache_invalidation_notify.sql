-- Cache invalidation: every statement that changes `properties` sends one NOTIFY on `rentscout_cache`
-- at commit (none on rollback), which the cache-query service LISTENs to.
--
-- Statement-level triggers with transition tables: a mass UPDATE of a million rows sends one
-- notification naming the cities and types it touched, not a million. NOTIFY payloads must stay
-- under 8000 bytes: ids are listed only for small statements (the service does not need them), and
-- when even the cities do not fit the payload says {"all": true}. Rows an UPDATE did not really
-- change are ignored; old and new city and type are both reported, so a property that moves from one
-- city to another invalidates both. `counts` says whether city/type/active counts may have changed,
-- `prices` whether price statistics may have (false for, say, a views counter: only popular lists
-- depend on views).
--
-- Payload: {"op": "INSERT|UPDATE|DELETE|TRUNCATE", "rows": n, "ids": [...] (<= 50),
--           "cities": [...old and new...], "types": [...], "counts": bool, "prices": bool}
--       or {"op": ..., "all": true}

CREATE OR REPLACE FUNCTION rentscout_cache_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    n_rows  bigint;
    ids     bigint[];
    cities  text[];
    types   text[];
    counts  boolean;
    prices  boolean;
    payload text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('rentscout_cache', json_build_object('op', TG_OP, 'all', true)::text);
        RETURN NULL;
    END IF;

    -- EXECUTE (not static SQL): static statements keep one cached plan, sized for the transition
    -- table of whichever statement ran first; a plan built for a million-row UPDATE then makes every
    -- later one-row UPDATE pay for million-row hash tables. EXECUTE plans each statement afresh.
    IF TG_OP IN ('INSERT', 'DELETE') THEN
        EXECUTE format(
            'SELECT count(*), (array_agg(id ORDER BY id))[1:50], array_agg(DISTINCT city),
                    array_agg(DISTINCT property_type), coalesce(bool_or(is_active), false) FROM %I',
            CASE TG_OP WHEN 'INSERT' THEN 'new_rows' ELSE 'old_rows' END)
          INTO n_rows, ids, cities, types, counts;
        prices := counts;
    ELSE
        EXECUTE $sql$
        WITH changed AS (
            SELECT coalesce(n.id, o.id) AS id, o.city AS old_city, n.city AS new_city,
                   o.property_type AS old_type, n.property_type AS new_type,
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
        SELECT count(*), (array_agg(id ORDER BY id))[1:50],
               (SELECT array_agg(DISTINCT c) FROM changed, unnest(ARRAY[old_city, new_city]) AS c WHERE c IS NOT NULL),
               (SELECT array_agg(DISTINCT t) FROM changed, unnest(ARRAY[old_type, new_type]) AS t WHERE t IS NOT NULL),
               coalesce(bool_or(moved), false), coalesce(bool_or(repriced), false)
          FROM changed
        $sql$ INTO n_rows, ids, cities, types, counts, prices;
    END IF;

    IF n_rows = 0 THEN
        RETURN NULL;
    END IF;
    payload := json_build_object('op', TG_OP, 'rows', n_rows, 'ids', coalesce(ids, '{}'),
                                 'cities', coalesce(cities, '{}'), 'types', coalesce(types, '{}'),
                                 'counts', counts, 'prices', prices)::text;
    IF octet_length(payload) > 7900 THEN
        payload := json_build_object('op', TG_OP, 'rows', n_rows, 'all', true)::text;
    END IF;
    PERFORM pg_notify('rentscout_cache', payload);
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS properties_cache_notify_insert ON properties;
CREATE TRIGGER properties_cache_notify_insert
    AFTER INSERT ON properties REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rentscout_cache_notify();

DROP TRIGGER IF EXISTS properties_cache_notify_update ON properties;
CREATE TRIGGER properties_cache_notify_update
    AFTER UPDATE ON properties REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rentscout_cache_notify();

DROP TRIGGER IF EXISTS properties_cache_notify_delete ON properties;
CREATE TRIGGER properties_cache_notify_delete
    AFTER DELETE ON properties REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rentscout_cache_notify();

DROP TRIGGER IF EXISTS properties_cache_notify_truncate ON properties;
CREATE TRIGGER properties_cache_notify_truncate
    AFTER TRUNCATE ON properties
    FOR EACH STATEMENT EXECUTE FUNCTION rentscout_cache_notify();
