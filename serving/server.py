"""Run the inference service with uvicorn: `driftloop serve` calls :func:`run`.

Settings come from one :class:`~core.settings.Settings`, built here at the entry point.
With several workers, uvicorn starts each worker process by importing
:func:`app_from_environment`; the one thing handed to them through the environment is the config
path (``DRIFTLOOP_SERVE_CONFIG``, set by :func:`run`), because an import string is all uvicorn
passes across processes. Each worker builds its own Settings from the environment it inherits;
the parent migrates the database once before they start, so workers never migrate. The workers
also share a fresh metrics directory (``PROMETHEUS_MULTIPROC_DIR``, made by :func:`run` and
removed when it returns), so `/metrics` on the port counts what all of them served
(`serving.prometheus`). Also runnable as `python -m serving.server --config driftloop.yaml --port 8000`.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from core.config_serving import ServingConfig

if TYPE_CHECKING:
    from core.settings import Settings

#: The config path handed to uvicorn's worker processes (the only environment handoff of ours).
_CONFIG_ENV = "DRIFTLOOP_SERVE_CONFIG"
#: prometheus_client's own variable: the directory the workers' metrics share.
_METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def load_serving_config(config_path: str | Path) -> tuple[Any, ServingConfig]:
    """The project config and its `serving:` section (defaults when the section is absent)."""
    from core.config import load_config

    project = load_config(config_path)
    return project, project.serving


def build_app(
    config_path: str | Path,
    *,
    settings: Settings | None = None,
    migrate: bool = True,
    metrics_dir: Path | None = None,
) -> FastAPI:
    """The app for a config file; ``settings`` default to those of the environment."""
    from core.settings import Settings
    from serving.app import create_app

    project, serving = load_serving_config(config_path)
    return create_app(
        settings=settings if settings is not None else Settings(),
        model_name=project.model_name,
        serving_config=serving,
        spool_dir=serving.resolved_spool_dir(project.base_dir),
        migrate=migrate,
        metrics_dir=metrics_dir,
    )


def app_from_environment() -> FastAPI:
    """uvicorn factory for the worker processes of `driftloop serve --workers N` (the parent
    passes the config path in ``DRIFTLOOP_SERVE_CONFIG``, the shared metrics directory in
    ``PROMETHEUS_MULTIPROC_DIR``, and has migrated the database)."""
    path = os.environ.get(_CONFIG_ENV)
    if not path:
        raise RuntimeError(f"{_CONFIG_ENV} is not set; start the service with `driftloop serve`")
    metrics = os.environ.get(_METRICS_ENV)
    return build_app(path, migrate=False, metrics_dir=Path(metrics) if metrics else None)


def run(
    config_path: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    log_level: str = "warning",
) -> None:
    """Serve the champion of the configured model until SIGINT/SIGTERM (then flush the log)."""
    from core.settings import Settings
    from monitoring.store import upgrade_database

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    # One OpenMP/BLAS thread per worker (workers are the parallelism); read by libraries that
    # load after this point, e.g. in worker processes. The scoring thread also sets it itself.
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config_path = Path(config_path).resolve()
    load_serving_config(config_path)  # fail fast on a bad config, before any worker starts
    settings = Settings()
    upgrade_database(settings.database_url)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": False,
        "loop": "uvloop",
        "http": "httptools",
        "timeout_graceful_shutdown": 30,
    }
    import uvicorn

    if workers == 1:
        uvicorn.run(build_app(config_path, settings=settings, migrate=False), **options)
        return
    os.environ[_CONFIG_ENV] = str(config_path)
    # A fresh directory per run: prometheus_client sums every file in it, so files of an earlier
    # run would be counted again. Set before the workers start (and import prometheus_client).
    metrics_dir = tempfile.mkdtemp(prefix="driftloop-metrics-")
    os.environ[_METRICS_ENV] = metrics_dir
    try:
        uvicorn.run("serving.server:app_from_environment", factory=True, workers=workers, **options)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="driftloop inference service")
    parser.add_argument("--config", default="driftloop.yaml")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    run(args.config, host=args.host, port=args.port, workers=args.workers, log_level=args.log_level)


if __name__ == "__main__":
    main()
