"""`serve --workers N`: uvicorn's worker processes get the config path (the one environment
handoff), build their own settings, and serve; the parent migrated the log once."""

from __future__ import annotations

from typing import Any

import httpx

from monitoring import store
from tests.serving.conftest import MODEL, Registry, records


def test_several_workers_serve_and_log(make_server: Any, registry_template: Registry) -> None:
    server = make_server(start=False)
    server.options = ["--workers", "2"]
    server.start()
    for _ in range(4):
        response = httpx.post(
            f"{server.url}/predict",
            json={"records": records(registry_template.holdout, 2)},
            timeout=30,
        )
        assert response.status_code == 200, response.text
    assert server.stop() in (0, -15)
    assert "Traceback" not in server.output()
    engine = store.make_engine(server.env["DRIFTLOOP_DATABASE_URL"])
    try:
        assert store.count_rows(engine, model_name=MODEL) == 8
    finally:
        engine.dispose()
