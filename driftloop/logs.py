"""Where the libraries' logs go when driftloop runs as a command: one file, not the terminal.

The terminal shows the user's story (what driftloop itself prints); Prefect's task and flow
logs, MLflow's messages and Python warnings go to ``<state dir>/logs/driftloop.log``, through
Prefect's and MLflow's own configuration switches (nothing is patched), and what libraries print
straight to stderr while a flow runs (MLflow's "Successfully registered model ..." lines) goes
there too (:func:`stderr_to`). ``driftloop --verbose`` leaves every library's output as it is.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from pathlib import Path

PREFECT_LOGGING = Path(__file__).resolve().parent / "prefect-logging.yml"


def log_file(state_dir: Path) -> Path:
    return state_dir / "logs" / "driftloop.log"


def send_logs_to_file(path: Path) -> Path:
    """Route Prefect, MLflow and Python warnings to ``path``; call before Prefect is imported.

    Variables the user set explicitly win. Returns the path.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_LOGGING_SETTINGS_PATH", str(PREFECT_LOGGING))
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_FILE_FILENAME", str(path.resolve()))
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")  # mlflow logs reach the root logger
    root = logging.getLogger()
    if not any(getattr(h, "baseFilename", None) == str(path.resolve()) for h in root.handlers):
        handler = logging.FileHandler(path, delay=True, encoding="utf-8")
        handler.setFormatter(
            logging.Formatter("%(asctime)s | %(levelname)-7s | %(name)s - %(message)s")
        )
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    return path


@contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Append what is written to ``sys.stderr`` meanwhile to ``path`` (the log file).

    MLflow prints its registry events ("Created version '2' of model ...") to whatever
    ``sys.stderr`` is at the time, not through logging.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8", buffering=1) as stream, redirect_stderr(stream):
        yield
