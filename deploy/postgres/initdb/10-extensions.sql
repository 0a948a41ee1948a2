-- Extensions the analyzer reads; the libraries are preloaded by the server's command line
-- (shared_preload_libraries=pg_stat_statements,pg_qualstats in docker-compose.yml).
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
CREATE EXTENSION IF NOT EXISTS hypopg;
CREATE EXTENSION IF NOT EXISTS pg_qualstats;
