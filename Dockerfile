# Image for the user-code server, the Dagster webserver and the daemon.
FROM python:3.11-slim

WORKDIR /opt/energy
COPY pyproject.toml README.md workspace.yaml ./
COPY energy_pipelines ./energy_pipelines
# dagster-postgres keeps Dagster's own run and event storage in PostgreSQL.
RUN pip install --no-cache-dir . "dagster-postgres==0.29.27"

ENV ENERGY_LANDING_DIR=/opt/energy/landing \
    DAGSTER_HOME=/opt/dagster/home
COPY deploy/dagster.yaml deploy/workspace.docker.yaml /opt/dagster/home/
