"""Dagster wiring of the ingestion group: history assets, their checks and the landing sensor."""
