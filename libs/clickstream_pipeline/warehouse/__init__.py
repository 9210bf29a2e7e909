"""The database: connections, migrations (schema and rollups), named queries and the
rollup runner."""
