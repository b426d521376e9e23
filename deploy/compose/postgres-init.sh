#!/bin/sh
# Run once by the postgres image on an empty data directory: one login role and one database per
# certfed service, each owned by its role and closed to everyone else, with the password from
# the service's secret. SECRETS_DIR is for trying the script outside a container.
set -eu
secrets_dir="${SECRETS_DIR:-/run/secrets}"
for service in registry lanzhou qingdao; do
  password="$(cat "$secrets_dir/$service-db-password")"
  psql --no-psqlrc -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -v name="$service" -v password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
done
