"""Dagster wiring of the hot_store group: current status per device and its checks."""
