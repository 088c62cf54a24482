"""Alembic migrations of the results index.

`ResultsIndex` upgrades every database it opens to the newest revision. A new revision for a schema
change: `alembic -c cxrxai/index/migrations/alembic.ini revision -m "what changes"` (see that file),
then write its upgrade and downgrade by hand and add a test that upgrades a database holding data.
"""
