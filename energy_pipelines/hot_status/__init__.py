"""Stage 5, hot status: the latest reading per device, refreshed incrementally after each load."""
