"""The FastAPI inference service: serves the champion, validates, predicts, logs every row.

Build it with :func:`create_app` (an entry point builds the settings and passes them in). Nothing
connects at import or at construction: the lifespan starts the service (`serving.service`: the
database, the registry, the writer) and keeps it in ``app.state.service``, polls the `champion`
alias, and on shutdown stops everything, flushing every queued log record. In front of the routes
(`serving.routes`) sits the gate (`serving.gate`), which also answers POST /predict
(`serving.predict`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from sqlalchemy.engine import Engine

from core.config_serving import ServingConfig
from core.settings import Settings
from serving.gate import Gate
from serving.openapi import complete_schema
from serving.prometheus import publish_every
from serving.routes import add_routes
from serving.service import Service, start_service


def create_app(
    *,
    settings: Settings,
    model_name: str,
    serving_config: ServingConfig | None = None,
    spool_dir: Path | None = None,
    engine: Engine | None = None,
    client: Any = None,
    migrate: bool = True,
    metrics_dir: Path | None = None,
) -> FastAPI:
    """The inference service for `models:/<model_name>@champion`.

    Args:
        settings: where the registry and the inference log are, and the API key.
        serving_config: service knobs (defaults when None).
        spool_dir: base directory of the durable spool (default: serving_config.spool_dir).
        engine: the inference-log engine (default: built from settings.database_url).
        client: an MlflowClient (default: one for settings.mlflow_tracking_uri).
        migrate: run the Alembic migrations at startup (off when a parent process did it).
        metrics_dir: the metrics directory the workers of `serve --workers N` share
            (``PROMETHEUS_MULTIPROC_DIR``); None: /metrics describes this process alone.
    """
    config = serving_config or ServingConfig()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = await asyncio.to_thread(
            start_service,
            settings=settings,
            model_name=model_name,
            config=config,
            spool_dir=spool_dir,
            engine=engine,
            client=client,
            migrate=migrate,
            metrics_dir=metrics_dir,
        )
        app.state.service = service
        service.shadow.start()
        tasks = [asyncio.create_task(_poll(service, config.poll_interval_seconds))]
        if metrics_dir is not None:
            tasks.append(asyncio.create_task(publish_every(service.metrics)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await service.batcher.close()
            await service.shadow.close()
            await asyncio.to_thread(service.writer.close)
            service.metrics.retire()
            if engine is None:
                service.engine.dispose()

    app = FastAPI(
        title="driftloop inference service",
        version="1",
        summary=f"Serves models:/{model_name}@champion and logs every prediction.",
        lifespan=lifespan,
    )
    app.add_middleware(Gate, state=app.state)
    add_routes(app, model_name=model_name, config=config)

    def openapi() -> dict[str, Any]:
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        service: Service | None = getattr(app.state, "service", None)
        current = service.holder.current if service is not None else None
        spec = service.input_spec(current) if service is not None and current else None
        protected = settings.api_key is not None and bool(settings.api_key.get_secret_value())
        return complete_schema(schema, model=current, spec=spec, config=config, protected=protected)

    app.openapi = openapi  # type: ignore[method-assign]
    return app


async def _poll(service: Service, interval: float) -> None:
    """Check the `champion` and `challenger` aliases every `interval` seconds, for as long as
    the service runs."""
    while True:
        await asyncio.sleep(interval)
        with contextlib.suppress(Exception):  # logged by refresh, which keeps the old model
            await asyncio.to_thread(service.holder.refresh)
        await asyncio.to_thread(service.shadow.refresh)
