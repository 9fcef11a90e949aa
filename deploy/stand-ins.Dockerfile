# Stand-ins for the postgres:16 and redis:7 images, built from a local Debian base where no
# image registry is reachable (deploy/ci-compose.sh). They behave as docker-compose.yml expects
# of the official images: POSTGRES_USER/POSTGRES_PASSWORD/POSTGRES_DB, data in
# /var/lib/postgresql/data, `postgres -c ...` and pg_isready; `redis-server ...`, redis-cli
# with REDISCLI_AUTH, data in /data. Debian 12 ships PostgreSQL 15 and Redis 7.0.
#
#   docker build -f deploy/stand-ins.Dockerfile --target postgres --build-arg BASE_IMAGE=... deploy
#   docker build -f deploy/stand-ins.Dockerfile --target redis --build-arg BASE_IMAGE=... deploy
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS postgres
# No "main" cluster from the package: the entrypoint makes one in PGDATA on first start.
RUN mkdir -p /etc/postgresql-common \
    && echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
RUN chmod 755 /usr/local/bin/postgres-entrypoint.sh
STOPSIGNAL SIGINT
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
CMD ["postgres"]

FROM ${BASE_IMAGE} AS redis
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data && chown redis:redis /data
WORKDIR /data
USER redis
EXPOSE 6379
CMD ["redis-server"]
