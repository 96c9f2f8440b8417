"""Stage 4, load: PostgreSQL connections, migrations, manifest and set-based history writes."""
