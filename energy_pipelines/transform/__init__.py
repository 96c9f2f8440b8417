"""Stage 3, transform: make valid rows loadable (one row per key, exact column types, key order)."""
