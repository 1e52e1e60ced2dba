-- Run once by the postgres image on an empty data volume (docker-entrypoint-initdb.d), as the
-- POSTGRES_USER of deploy/compose.yaml. POSTGRES_DB (banyan_proxy) holds the proxy's parity, mirror
-- and control stores; each backend gets a database of its own.
CREATE DATABASE banyan_legacy;
CREATE DATABASE banyan_new;
