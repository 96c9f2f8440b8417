"""Dagster wiring of maintenance: history retention."""
