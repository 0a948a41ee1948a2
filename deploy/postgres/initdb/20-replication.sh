#!/bin/sh
# Let streaming standbys (the compose `replica` profile: pg_basebackup -R) connect for replication
# with the same password as everyone else. Run once, on an empty data directory, by the entrypoint.
set -eu
echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
