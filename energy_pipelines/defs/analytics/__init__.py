"""Dagster wiring of the analytics group: daily partitioned tables and the late-data sensor."""
