"""Stage 2, validation: type raw columns, check values with Pandera, split valid from rejected."""
