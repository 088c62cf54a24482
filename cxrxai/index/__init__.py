"""The results index: one row per explained radiograph and one per finding, filled from our SR results,
queried as pandas DataFrames. SQLAlchemy, so a SQLite file (default) and a shared server use one code."""

from cxrxai.index.database import ResultsIndex

__all__ = ["ResultsIndex"]
