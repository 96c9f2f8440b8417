-- Dagster's own run, event and schedule storage lives beside the data, in its own database.
CREATE DATABASE dagster OWNER energy;
