"""Stage 1, landing storage: find settled gateway files, read them, archive or quarantine them."""
