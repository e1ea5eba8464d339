"""The database: engines, the schema and its migrations, guarded reads."""
