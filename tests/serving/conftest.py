"""A real MLflow registry with driftloop-registered employment models, and real service processes.

The registry is built once per session (two versions: a logistic pipeline and a random forest);
each test gets its own copy of the registry database (the artifacts are shared, read-only), so
moving an alias in one test never leaks into another.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from registry import model_spec_tag
from serving.model import ServedModel, reference_columns
from tests.conftest import DATA, REPO

MODEL = "employment"
NUMERIC = ["AGEP"]
CATEGORICAL = [
    "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC", "NATIVITY", "DEAR", "DEYE", "DREM", "SEX",
    "RAC1P",
]  # fmt: skip
NOT_NULL = ["AGEP"]
TARGET = "employed"
PYTHON = sys.executable


@pytest.fixture(scope="module")
def split_data() -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    """2,000 employment rows: training features and labels (1,500), and 500 rows to check on."""
    frame = pd.read_parquet(DATA / "reference_2015.parquet").sample(2000, random_state=3)
    train, check = frame.iloc[:1500], frame.iloc[1500:]
    return train[NUMERIC + CATEGORICAL], train[TARGET], check


def served(pipeline: Any, *, task: str = "classification") -> ServedModel:
    """A ServedModel around a fitted pipeline, without a registry (no fast path yet)."""
    classes = tuple(pipeline.classes_.tolist()) if task == "classification" else ()
    return ServedModel(
        name="employment",
        version=1,
        run_id="run",
        task=task,
        target=TARGET,
        numeric=tuple(NUMERIC),
        categorical=tuple(CATEGORICAL),
        not_null=frozenset(),
        classes=classes,
        pipeline=pipeline,
    )


def check_rows(check: pd.DataFrame) -> dict[str, list[Any]]:
    """Rows of a frame as the service receives them (column-wise, float/None, str/None)."""
    return reference_columns(check, NUMERIC, CATEGORICAL, len(check))


def feature_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Numeric float64 and categorical object-str columns, in the contract's order."""
    out = {c: frame[c].astype("float64").to_numpy() for c in NUMERIC}
    for c in CATEGORICAL:
        out[c] = frame[c].astype(str).astype(object).to_numpy()
    return pd.DataFrame(out)


def build_pipeline(family: str, seed: int = 0) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), NUMERIC),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="missing"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                CATEGORICAL,
            ),
        ]
    )
    if family == "logistic":
        estimator = LogisticRegression(C=1.0, max_iter=500)
    else:
        estimator = RandomForestClassifier(
            n_estimators=20, max_depth=8, random_state=seed, n_jobs=1
        )
    return Pipeline([("preprocess", pre), ("model", estimator)])


def register(client: Any, experiment_id: str, family: str, X: pd.DataFrame, y: pd.Series) -> int:
    """Fit and register a version the way the training flow does: `registry.log_model_version`
    (reference snapshot, signature, example, integrity record) with the driftloop tags.

    The global MLflow tracking URI must be the client's (the run is logged through it).
    """
    import mlflow
    from mlflow.models import infer_signature

    from pipelines.reference import build_reference
    from registry import log_model_version

    pipeline = build_pipeline(family).fit(X, y)
    example = X.head(5)
    with mlflow.start_run(experiment_id=experiment_id):
        return log_model_version(
            client,
            model_name=MODEL,
            pipeline=pipeline,
            reference=build_reference(pipeline, X, y, target=TARGET, task="classification"),
            signature=infer_signature(example, pipeline.predict(example)),
            input_example=example,
            tags={
                **model_spec_tag(
                    task="classification",
                    target=TARGET,
                    numeric=NUMERIC,
                    categorical=CATEGORICAL,
                    not_null=NOT_NULL,
                    classes=[int(c) for c in pipeline.classes_],
                ),
                "driftloop.family": family,
            },
        )


def register_in(tracking_uri: str, artifacts: Path, family: str, frame: pd.DataFrame) -> int:
    """Register one more version into a test's own registry copy, its files under `artifacts`
    (the template's artifacts are shared by every test: tamper only with files made here)."""
    import mlflow
    from mlflow import MlflowClient

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        experiment_id = client.create_experiment(
            f"own-{artifacts.name}", artifact_location=artifacts.as_uri()
        )
        X, y = feature_frame(frame), frame[TARGET].reset_index(drop=True)
        return register(client, experiment_id, family, X, y)
    finally:
        mlflow.set_tracking_uri(previous)


@dataclass(frozen=True)
class Registry:
    """A session-wide registry template: copy() gives a test its own tracking database."""

    root: Path
    versions: dict[str, int]
    holdout: pd.DataFrame
    train: pd.DataFrame

    def copy(self, directory: Path) -> str:
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / "mlflow.db"
        shutil.copyfile(self.root / "mlflow.db", target)
        return f"sqlite:///{target}"


@pytest.fixture(scope="session")
def registry_template(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    import mlflow
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        client = MlflowClient(tracking_uri=uri)
        experiment_id = client.create_experiment(
            "employment-training", artifact_location=(root / "mlruns").as_uri()
        )
        frame = pd.read_parquet(DATA / "reference_2015.parquet").sample(4000, random_state=1)
        train, holdout = frame.iloc[:3000], frame.iloc[3000:]
        X, y = feature_frame(train), train[TARGET].reset_index(drop=True)
        versions = {
            "logistic": register(client, experiment_id, "logistic", X, y),
            "forest": register(client, experiment_id, "forest", X, y),
        }
        client.set_registered_model_alias(MODEL, "champion", str(versions["logistic"]))
    finally:
        mlflow.set_tracking_uri(previous)
    return Registry(
        root=root,
        versions=versions,
        holdout=holdout.reset_index(drop=True),
        train=train.reset_index(drop=True),
    )


@pytest.fixture
def tracking_uri(registry_template: Registry, tmp_path: Path) -> str:
    return registry_template.copy(tmp_path / "registry")


def records(frame: pd.DataFrame, n: int | None = None) -> list[dict[str, Any]]:
    """JSON records of feature rows, as a client sends them."""
    X = feature_frame(frame if n is None else frame.head(n))
    out = X.to_dict(orient="records")
    for row in out:
        for key, value in row.items():
            if isinstance(value, float) and np.isnan(value):
                row[key] = None
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(directory: Path, serving: dict[str, Any] | None = None) -> Path:
    base = yaml.safe_load((REPO / "driftloop.yaml").read_text())
    base["data"] = {"train": str(DATA / "reference_2015.parquet")}
    base["features"]["not_null"] = NOT_NULL
    base["serving"] = {
        "poll_interval_seconds": 0.5,
        "spool_dir": str(directory / "spool"),
        **(serving or {}),
    }
    path = directory / "driftloop.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


@dataclass
class Server:
    """A `python -m serving.server` process on a free loopback port."""

    config: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    #: more command-line options, e.g. ["--workers", "2"]
    options: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True, timeout: float = 120.0) -> Server:
        self.log = self.config.parent / f"server-{self.port}-{time.time_ns()}.log"
        handle = open(self.log, "wb")  # noqa: SIM115 - the child writes to it
        self.process = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "serving.server",
                "--config",
                str(self.config),
                "--port",
                str(self.port),
                *self.options,
            ],
            cwd=REPO,
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_ready(timeout)
        return self

    def headers(self) -> dict[str, str]:
        key = self.env.get("DRIFTLOOP_API_KEY")
        return {"X-API-Key": key} if key else {}

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"server exited with {self.process.returncode}:\n{self.output()}"
                )
            try:
                response = httpx.get(f"{self.url}/ready", headers=self.headers(), timeout=2)
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server not ready after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return (
            self.log.read_text(errors="replace")[-5000:] if self.log and self.log.exists() else ""
        )

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> int:
        """SIGTERM (graceful: flushes the log) and wait."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"server did not stop on SIGTERM:\n{self.output()}") from None


def server_env(tracking_uri: str, database_url: str, api_key: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTLOOP_", "MLFLOW_"))}
    env.update(
        {
            "MLFLOW_TRACKING_URI": tracking_uri,
            "DRIFTLOOP_DATABASE_URL": database_url,
            "PYTHONPATH": str(REPO),
        }
    )
    if api_key:
        env["DRIFTLOOP_API_KEY"] = api_key
    return env


class ServerFactory:
    """Starts Server processes in a directory; kills whatever is still running at teardown."""

    def __init__(self, directory: Path, tracking_uri: str) -> None:
        self.directory = directory
        self.tracking_uri = tracking_uri
        self.started: list[Server] = []

    def __call__(
        self,
        *,
        database_url: str | None = None,
        api_key: str | None = None,
        serving: dict[str, Any] | None = None,
        start: bool = True,
    ) -> Server:
        directory = self.directory / f"svc{len(self.started)}"
        directory.mkdir(parents=True)
        url = database_url or f"sqlite:///{self.directory / 'driftloop.db'}"
        server = Server(
            config=write_config(directory, serving), env=server_env(self.tracking_uri, url, api_key)
        )
        self.started.append(server)
        return server.start() if start else server

    def cleanup(self) -> None:
        for server in self.started:
            if server.process is not None and server.process.poll() is None:
                server.process.kill()
                server.process.wait(30)


@pytest.fixture
def make_server(tmp_path: Path, tracking_uri: str) -> Iterator[ServerFactory]:
    """Factory: make_server(database_url=..., api_key=..., serving={...}) -> started Server."""
    factory = ServerFactory(tmp_path, tracking_uri)
    yield factory
    factory.cleanup()


@pytest.fixture(scope="module")
def module_server_factory(
    registry_template: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerFactory]:
    """Like make_server, shared by the tests of one module (one registry copy, one database)."""
    directory = tmp_path_factory.mktemp("module-server")
    factory = ServerFactory(directory, registry_template.copy(directory / "registry"))
    yield factory
    factory.cleanup()


class Load:
    """Client threads posting single records as fast as they are answered; keeps every answer."""

    def __init__(
        self,
        server: Server,
        rows: list[dict[str, Any]],
        *,
        threads: int = 4,
        fresh_connections: bool = False,
    ) -> None:
        """`fresh_connections`: a new connection per request (so each of a port's uvicorn
        workers accepts some), instead of one kept-alive connection per thread."""
        self.server = server
        self.rows = rows
        self.threads = threads
        self.limits = httpx.Limits(max_keepalive_connections=0 if fresh_connections else None)
        self.acked: list[dict[str, Any]] = []  # {request_id, model_version} of every 200
        self.statuses: list[int] = []
        self.failures: list[str] = []  # connection errors (expected only after a kill)
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()

    def _run(self, offset: int) -> None:
        with httpx.Client(
            base_url=self.server.url, headers=self.server.headers(), timeout=30, limits=self.limits
        ) as client:
            i = offset
            while not self._stop.is_set():
                row = self.rows[i % len(self.rows)]
                i += self.threads
                try:
                    response = client.post("/predict", json=row)
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.failures.append(type(exc).__name__)
                    time.sleep(0.05)
                    continue
                with self._lock:
                    self.statuses.append(response.status_code)
                    if response.status_code == 200:
                        body = response.json()
                        for p in body["predictions"]:
                            self.acked.append(
                                {
                                    "request_id": p["request_id"],
                                    "model_version": body["model_version"],
                                }
                            )

    def start(self) -> Load:
        for n in range(self.threads):
            thread = threading.Thread(target=self._run, args=(n,), daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def stop(self) -> Load:
        self._stop.set()
        for thread in self._workers:
            thread.join(60)
        return self

    def wait_acked(self, n: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < n:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"only {len(self.acked)} acknowledged requests after {timeout}s"
                )
            time.sleep(0.05)
