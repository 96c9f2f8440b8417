"""Stage 6, daily analytics: per-day efficiency per vehicle, usage per meter, 24-hour summary."""
