"""Reading tabular data: CSV, Parquet or a SQL query. The only file/database reads of training data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from core.config import SqlSource
from core.errors import DriftloopError


class DataSourceError(DriftloopError, ValueError):
    """A data file or query cannot be read; the message names it."""


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file into a new frame."""
    path = Path(path)
    if not path.is_file():
        raise DataSourceError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in {".parquet", ".pq"}:
            return pd.read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path)
    except Exception as exc:  # pandas/pyarrow raise many types for a bad file
        raise DataSourceError(f"cannot read {path}: {exc}") from None
    raise DataSourceError(f"unsupported data file {path}: use .csv or .parquet")


def read_sql(source: SqlSource) -> pd.DataFrame:
    """Run the configured query and return its rows."""
    engine = sa.create_engine(source.url)
    try:
        with engine.connect() as conn:
            return pd.read_sql_query(sa.text(source.query), conn)
    except sa.exc.SQLAlchemyError as exc:
        error = DataSourceError(
            f"query on {engine.url.render_as_string(hide_password=True)} failed: {exc}"
        )
        error.transient = isinstance(exc, sa.exc.OperationalError)  # the server may come back
        raise error from None
    finally:
        engine.dispose()


def read_source(source: str | Path | SqlSource, *, base_dir: Path = Path(".")) -> pd.DataFrame:
    """Read a file path (relative to base_dir) or a SQL source."""
    if isinstance(source, SqlSource):
        return read_sql(source)
    path = Path(source)
    return read_table(path if path.is_absolute() else base_dir / path)
