"""`driftloop demo`: the whole loop on the shipped employment data, with nothing to configure.

Trains the first champion on 2015, starts the real inference server (uvicorn on loopback), sends
the 2016-2018 traffic to it over HTTP in time order with ground truth posted back later through
`/feedback`, runs the monitor flow on a compressed schedule, and lets a named scenario inject
drift partway through. The monitor alerts and retrains when drift hurts; the server hot-swaps to
the new champion only if it is better. Ends with a timeline table, `demo-report/` (PNG timeline,
latest Evidently HTML report) and the commands to browse everything in the three UIs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import yaml
from prefect import flow

from core.config import ProjectConfig, parse_config
from core.errors import DriftloopError
from core.settings import local_state_environment
from pipelines.scenarios import apply_scenario

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "employment"
#: Requests carry this many rows each; labels come back this many requests later.
REQUEST_ROWS = 500
LABEL_DELAY_REQUESTS = 4
#: Where the scenario starts, as a share of the traffic.
CHANGE_POINT = 0.4

# Demo-speed settings on top of driftloop.yaml: a compressed schedule has no 24-hour cooldown,
# and retraining searches on a sample (the final fit uses every row).
DEMO_OVERRIDES: dict[str, Any] = {
    "model": {"max_train_rows": 15000, "search_iterations": 3, "cv_folds": 3},
    "monitoring": {
        "window": {"kind": "since_last_run"},
        "min_window_rows": 2000,
        "policy": {"cooldown_hours": 0, "max_retrains_per_day": 3, "min_labeled_rows": 1000},
        "retrain": {"max_live_rows": 20000, "min_labeled_rows": 5000},
    },
    "serving": {"poll_interval_seconds": 2.0},
}


class DemoError(DriftloopError, RuntimeError):
    """The demo could not run; the message says what to do."""


@dataclass
class Row:
    """One line of the timeline."""

    window: int
    rows_sent: int
    window_rows: int
    status: str
    drift_share: float | None
    drifted: str
    alert: bool
    retrain: bool
    champion: int
    serving_accuracy: float
    frozen_accuracy: float


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge two config mappings (pure)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            merged(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


def demo_config(state: Path, overrides: dict[str, Any] | None = None) -> tuple[ProjectConfig, Path]:
    """driftloop.yaml with the demo settings (and ``overrides`` on top), written under ``state``."""
    raw = yaml.safe_load((REPO / "driftloop.yaml").read_text())
    raw = merged(merged(raw, DEMO_OVERRIDES), overrides or {})
    raw["data"] = {"train": str(DATA / "reference_2015.parquet")}
    raw["serving"] = {**raw.get("serving", {}), "spool_dir": str(state / "spool")}
    path = state / "driftloop.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return parse_config(raw, base_dir=state, source=str(path)), path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_env(state: Path) -> dict[str, str]:
    """The settings (by their variable names) that put every store under the demo's state."""
    return local_state_environment(state, workspace="evidently-workspace")


@contextmanager
def inference_server(config_path: Path, env: dict[str, str], log: Path) -> Iterator[str]:
    """`driftloop serve` as a real uvicorn process on a free loopback port."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "serving.server",
                "--config",
                str(config_path),
                "--port",
                str(port),
            ],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DemoError(f"the inference server exited ({proc.returncode}); see {log}")
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise DemoError(f"the inference server did not become ready in 120 s; see {log}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def in_time_order(live: pd.DataFrame, seed: int = 7) -> pd.DataFrame:
    """Rows by year, in a seeded random order within each year (pure).

    The year is the data's only time. Within a year the files list people by household serial,
    which puts everyone in group quarters (RELP 16/17) of 2017 and 2018 in one block at the turn
    of those years (in 2016 they are spread evenly, about 7% of every window):
    sent in file order, that block looks like a sudden sub-population shift that never happened.
    """
    return live.sample(frac=1.0, random_state=seed).sort_values("year", kind="stable")


def load_traffic(scenario: str, sample_every: int) -> tuple[pd.DataFrame, pd.Series, int]:
    """The live traffic in time order with the scenario applied, its labels, and the change row."""
    if sample_every < 1:
        raise DemoError(f"sample_every must be at least 1, got {sample_every}")
    live = pd.read_parquet(DATA / "live_2016_2018.parquet")
    labels = pd.read_parquet(DATA / "live_2016_2018_labels.parquet").set_index("id")["employed"]
    live = in_time_order(live).iloc[::sample_every].reset_index(drop=True)
    traffic = apply_scenario(live, scenario, start_fraction=CHANGE_POINT, seed=7)
    # `sudden` thins the rows after the change point, so the change row comes from the input.
    return traffic, traffic["id"].map(labels), int(len(live) * CHANGE_POINT)


def records(frame: pd.DataFrame, features: list[str]) -> list[dict[str, Any]]:
    part = frame[features].astype(object)
    return part.where(part.notna(), None).to_dict(orient="records")


def timeline_table(rows: list[Row]) -> str:
    head = (
        f"{'win':>3} {'sent':>7} {'rows':>6} {'status':<15} {'drift':>6} {'alert':<5} {'retrain':<7} "
        f"{'champ':>5} {'acc':>6} {'frozen':>6}  drifted features"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        share = "-" if r.drift_share is None else f"{r.drift_share:.2f}"
        lines.append(
            f"{r.window:>3} {r.rows_sent:>7} {r.window_rows:>6} {r.status:<15} {share:>6} "
            f"{'YES' if r.alert else 'no':<5} {'YES' if r.retrain else 'no':<7} v{r.champion:<4} "
            f"{r.serving_accuracy:>6.3f} {r.frozen_accuracy:>6.3f}  {r.drifted}"
        )
    return "\n".join(lines)


def plot_timeline(rows: list[Row], path: Path, scenario: str, change_at: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r.rows_sent for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    top.plot(x, [r.serving_accuracy for r in rows], marker="o", label="serving model")
    top.plot(
        x, [r.frozen_accuracy for r in rows], marker="x", linestyle="--", label="frozen first model"
    )
    for ax in (top, bottom):
        ax.axvline(change_at, color="grey", linestyle=":", label="scenario starts")
    for i, r in enumerate(r for r in rows if r.retrain):
        top.axvline(
            r.rows_sent, color="tab:green", alpha=0.4, label="retraining" if i == 0 else None
        )
    top.set_ylabel("accuracy on labeled window")
    top.legend(loc="lower left")
    top.set_title(f"driftloop demo, scenario '{scenario}'")
    width = (x[1] - x[0]) * 0.6 if len(x) > 1 else 1000
    shares = [r.drift_share or 0 for r in rows]
    alerted = [r.alert for r in rows]
    for flag, color, label in ((True, "tab:red", "alert"), (False, "tab:blue", "no alert")):
        picked = [(xi, si) for xi, si, a in zip(x, shares, alerted, strict=True) if a is flag]
        if picked:
            bottom.bar(*zip(*picked, strict=True), width=width, color=color, label=label)
    bottom.set_ylabel("share of drifted features")
    bottom.set_xlabel("live rows sent")
    bottom.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def headline(reason: str) -> str:
    """The first clause of a decision's reason, for a one-line progress note (pure)."""
    return reason.split(":", 1)[0].split(";", 1)[0].strip()


def accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(pred == truth)) if len(truth) else float("nan")


def send_chunk(
    http: httpx.Client, chunk: pd.DataFrame, features: list[str], start: int
) -> tuple[list[str], list[tuple[int, int, int]]]:
    """POST one request of rows; its request ids, and (position, prediction, version) per row."""
    response = http.post("/predict", json={"records": records(chunk, features)})
    if response.status_code != 200:
        raise DemoError(f"/predict answered {response.status_code}: {response.text[:500]}")
    body = response.json()
    ids = [p["request_id"] for p in body["predictions"]]
    served = [
        (start + offset, int(p["prediction"]), body["model_version"])
        for offset, p in enumerate(body["predictions"])
    ]
    return ids, served


def post_arrived_labels(http: httpx.Client, pending: list[tuple[list[str], list[int]]]) -> None:
    """The labels of the request LABEL_DELAY_REQUESTS requests old arrive through /feedback."""
    if len(pending) <= LABEL_DELAY_REQUESTS:
        return
    ids, values = pending.pop(0)
    labels = [{"request_id": r, "label": y} for r, y in zip(ids, values, strict=True)]
    http.post("/feedback", json={"labels": labels}).raise_for_status()


def retrain_and_reload(
    config: ProjectConfig,
    settings: Any,
    outcome: Any,
    http: httpx.Client,
    *,
    window_no: int,
    say: Callable[..., None],
) -> None:
    """Run the retraining the monitor asked for; a promoted version is loaded by the server."""
    from flows.retrain import retrain_asked
    from pipelines.retraining import RetrainRefused

    line = {"no_wrap": True, "overflow": "ellipsis", "markup": False}
    try:
        result = retrain_asked(config, settings, outcome, trigger="demo")
    except RetrainRefused as exc:
        say(f"window {window_no}: retraining refused: {exc}", **line)
        return
    verdict = "PROMOTED" if result["promoted"] else "refused"
    say(
        f"window {window_no}: retrained ({headline(outcome.retrain.reason)})"
        f" -> v{result['version']} {verdict}: {headline(result['reason'])}",
        **line,
    )
    if result["promoted"]:
        http.post("/reload").raise_for_status()


def window_row(
    outcome: Any,
    *,
    window_no: int,
    rows_sent: int,
    served: list[tuple[int, int, int]],
    truth: pd.Series,
    frozen_accuracy: float,
) -> Row:
    """The timeline's line for one monitor window (pure)."""
    positions = np.array([s[0] for s in served])
    drift = outcome.result.drift
    return Row(
        window=window_no,
        rows_sent=rows_sent,
        window_rows=outcome.result.window_rows,
        status=outcome.result.status,
        drift_share=drift.drift_share if drift else None,
        drifted=", ".join(drift.drifted_features) if drift else "",
        alert=outcome.alert.yes,
        retrain=outcome.retrain.yes,
        champion=max(s[2] for s in served),
        serving_accuracy=accuracy(
            np.array([s[1] for s in served]), truth.iloc[positions].to_numpy()
        ),
        frozen_accuracy=frozen_accuracy,
    )


def browse_lines(state: Path) -> list[str]:
    """How to open the three UIs on what the demo left under ``state``."""
    rel = os.path.relpath(state, Path.cwd())
    return [
        "\nBrowse what happened:",
        f"  MLflow (models, versions, aliases, lineage):  .venv/bin/mlflow ui --backend-store-uri sqlite:///{rel}/mlflow.db --port 5000   -> http://127.0.0.1:5000/#/models/employment",
        f"  Evidently (drift dashboards):                  DRIFTLOOP_WORKSPACE={rel}/evidently-workspace .venv/bin/driftloop ui --port 8001   -> http://127.0.0.1:8001",
        "  Prefect (flow runs, artifacts):                .venv/bin/prefect server start   -> http://127.0.0.1:4200/runs",
    ]


@flow(name="demo", validate_parameters=False)
def run_demo(
    scenario: str,
    *,
    monitor_every: int,
    sample_every: int,
    out_dir: Path,
    state: Path,
    echo: Callable[[str], None] | None = None,
    overrides: dict[str, Any] | None = None,
) -> list[Row]:
    """The whole loop; returns the timeline. ``overrides`` go on top of the demo config (tests);
    ``echo`` prints progress lines (default: print)."""
    echo = echo or print
    from rich.progress import Progress

    import registry
    from core.settings import Settings
    from flows.ingest import ingest_config
    from flows.monitor import monitor_once
    from flows.train import train_and_gate
    from pipelines.schema import prepare_features

    if state.exists():
        shutil.rmtree(state)
    state.mkdir(parents=True)
    # every store under the state directory, for this process and the inference server's;
    # retraining runs in this process (retrain_and_reload), whatever Prefect server is configured
    env = demo_env(state)
    settings = Settings(**env)
    config, config_path = demo_config(state, overrides)
    started = time.monotonic()
    echo("1/4 training the first champion on 2015 (68,785 rows) ...")
    first = train_and_gate(
        config, settings, ingested=ingest_config(config), lineage={"trigger": "demo"}
    )
    echo(f"    v{first.version}: {first.reason}")
    client = registry.make_client(settings.mlflow_tracking_uri)
    frozen = registry.load_model(client, config.model_name, first.version)
    spec = registry.version_info(
        registry.get_version(client, config.model_name, first.version)
    ).spec
    traffic, truth, change_at = load_traffic(scenario, sample_every)
    features = list(spec.columns)
    rows: list[Row] = []
    pending: list[tuple[list[str], list[int]]] = []
    # (position, prediction, version) of each row served since the last monitor run
    served: list[tuple[int, int, int]] = []
    echo(
        f"2/4 starting the inference server and sending {len(traffic):,} rows of 2016-2018 traffic "
        f"(scenario '{scenario}' from row {change_at:,}) ..."
    )
    with (
        inference_server(config_path, env, state / "server.log") as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        since_monitor = 0
        # the bar does not capture stderr: the CLI sends what libraries print there to its log
        with Progress(transient=False, redirect_stdout=False, redirect_stderr=False) as progress:
            bar = progress.add_task("traffic", total=len(traffic))
            for start in range(0, len(traffic), REQUEST_ROWS):
                chunk = traffic.iloc[start : start + REQUEST_ROWS]
                ids, answered = send_chunk(http, chunk, features, start)
                served += answered
                pending.append((ids, truth.iloc[start : start + REQUEST_ROWS].astype(int).tolist()))
                post_arrived_labels(http, pending)
                progress.advance(bar, len(chunk))
                since_monitor += len(chunk)
                if since_monitor < monitor_every and start + REQUEST_ROWS < len(traffic):
                    continue
                since_monitor = 0
                outcome = monitor_once(config, settings, triggered_by="demo")
                positions = np.array([s[0] for s in served])
                frozen_pred = frozen.predict(prepare_features(traffic.iloc[positions], spec))
                row = window_row(
                    outcome,
                    window_no=len(rows) + 1,
                    rows_sent=start + len(chunk),
                    served=served,
                    truth=truth,
                    frozen_accuracy=accuracy(
                        np.asarray(frozen_pred), truth.iloc[positions].to_numpy()
                    ),
                )
                served = []
                if outcome.retrain.yes:
                    retrain_and_reload(
                        config,
                        settings,
                        outcome,
                        http,
                        window_no=row.window,
                        say=progress.console.print,
                    )
                rows.append(row)
                if outcome.report_path:
                    out_dir.mkdir(parents=True, exist_ok=True)
                    shutil.copy(outcome.report_path, out_dir / "latest_drift_report.html")
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_timeline(rows, out_dir / "timeline.png", scenario, change_at)
    pd.DataFrame([r.__dict__ for r in rows]).to_csv(out_dir / "timeline.csv", index=False)
    echo(
        "3/4 timeline (accuracy of the serving model vs the frozen first model, on each window's labels):"
    )
    echo(timeline_table(rows))
    echo(
        f"4/4 done in {time.monotonic() - started:.0f} s: {sum(r.alert for r in rows)} alerts, "
        f"{sum(r.retrain for r in rows)} retraining(s). Report: {out_dir}/timeline.png, "
        f"{out_dir}/latest_drift_report.html"
    )
    for line in browse_lines(state):
        echo(line)
    return rows
