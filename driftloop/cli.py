"""The `driftloop` command. Errors users can fix are printed as one clear message, no traceback."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

app = typer.Typer(
    help="driftloop: train, register, serve, monitor and retrain a scikit-learn model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="path to driftloop.yaml")]


@app.callback()
def _quiet_offline_defaults() -> None:
    """Quieter defaults for a terminal; a variable the user set explicitly still wins.

    Prefect's ephemeral server would log an ERROR for every telemetry ping it cannot send
    offline, and MLflow draws a progress bar for every reference snapshot it downloads.
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


T = TypeVar("T")


def _user_errors() -> tuple[type[BaseException], ...]:
    from driftloop.config import ConfigError
    from driftloop.io import DataSourceError
    from driftloop.registry import ModelNotFoundError
    from driftloop.scenarios import ScenarioError
    from pipelines.training import ModelSpecError
    from pipelines.validation import DataValidationError
    from serving.model import ModelLoadError

    return (
        ConfigError,
        DataSourceError,
        ModelNotFoundError,
        DataValidationError,
        ModelSpecError,
        ModelLoadError,
        ScenarioError,
        FileNotFoundError,
    )


def run_or_exit(action: Callable[[], T]) -> T:
    """Run a command body; print a known error as one message (exit code 2)."""
    try:
        return action()
    except _user_errors() as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from None


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


@app.command()
def train(config: ConfigOpt = Path("driftloop.yaml")) -> None:
    """Ingest, validate, train, evaluate and register a model; promote it only if it beats the champion."""
    from driftloop.config import load_config

    run_or_exit(lambda: load_config(config))  # fail fast, before Prefect starts
    from flows.train import train as train_flow

    outcome: dict[str, Any] = run_or_exit(
        lambda: train_flow(config_path=str(config), trigger="manual")
    )
    verdict = "promoted to champion" if outcome["promoted"] else "registered as challenger"
    typer.echo(
        f"{outcome['model_name']} version {outcome['version']} {verdict}: {outcome['reason']}"
    )


@app.command()
def promote(
    version: Annotated[int, typer.Option("--version", "-v", help="model version to make champion")],
    config: ConfigOpt = Path("driftloop.yaml"),
    reason: Annotated[str, typer.Option(help="recorded on the version")] = "manual promotion",
) -> None:
    """Point the `champion` alias at a version (the server picks it up without restart)."""
    from driftloop import registry
    from driftloop.config import load_config
    from driftloop.settings import Settings

    def body() -> None:
        cfg = load_config(config)
        client = registry.make_client(Settings().mlflow_tracking_uri)
        previous = registry.set_champion(
            client, cfg.model_name, version, reason=reason, actor=_actor()
        )
        typer.echo(
            f"{cfg.model_name}: champion is now version {version} (was {previous or 'none'})"
        )

    run_or_exit(body)


@app.command()
def rollback(config: ConfigOpt = Path("driftloop.yaml")) -> None:
    """Move `champion` back to the previous champion."""
    from driftloop import registry
    from driftloop.config import load_config
    from driftloop.settings import Settings

    def body() -> None:
        cfg = load_config(config)
        client = registry.make_client(Settings().mlflow_tracking_uri)
        old, new = registry.rollback(client, cfg.model_name, actor=_actor())
        typer.echo(f"{cfg.model_name}: champion rolled back from version {old} to version {new}")

    run_or_exit(body)


@app.command()
def versions(config: ConfigOpt = Path("driftloop.yaml")) -> None:
    """List the registered versions with their role, metric and trigger."""
    from driftloop import registry
    from driftloop.config import load_config
    from driftloop.settings import Settings

    def body() -> None:
        cfg = load_config(config)
        client = registry.make_client(Settings().mlflow_tracking_uri)
        champion = registry.get_alias(client, cfg.model_name, registry.CHAMPION)
        metric = cfg.promotion.metric
        typer.echo(f"{'version':>7}  {'role':<16} {metric:>10}  trigger")
        for mv in registry.list_versions(client, cfg.model_name):
            role = (
                "champion"
                if champion and champion.version == mv.version
                else mv.tags.get(registry.TAG + "role", "")
            )
            value = mv.tags.get(f"{registry.TAG}holdout_{metric}", "")
            typer.echo(
                f"{mv.version:>7}  {role:<16} {value[:10]:>10}  {mv.tags.get(registry.TAG + 'trigger', '')}"
            )

    run_or_exit(body)


@app.command()
def verify(
    config: ConfigOpt = Path("driftloop.yaml"),
    version: Annotated[
        int | None, typer.Option("--version", "-v", help="check only this version")
    ] = None,
) -> None:
    """Check every version's stored files (model and reference) against its integrity record."""
    from driftloop import registry
    from driftloop.config import load_config
    from driftloop.settings import Settings

    def body() -> None:
        cfg = load_config(config)
        client = registry.make_client(Settings().mlflow_tracking_uri)
        if version is not None:
            versions = [int(registry.get_version(client, cfg.model_name, version).version)]
        else:
            versions = [int(mv.version) for mv in registry.list_versions(client, cfg.model_name)]
        if not versions:
            raise registry.ModelNotFoundError(
                f"model {cfg.model_name!r} has no versions; register one with `driftloop train`"
            )
        failed = []
        for number in versions:
            try:
                registry.verify_version(client, cfg.model_name, number)
            except registry.ModelIntegrityError as exc:
                failed.append(number)
                typer.echo(f"{cfg.model_name} v{number}: FAILED {exc.problem}")
            else:
                typer.echo(f"{cfg.model_name} v{number}: ok")
        if failed:
            typer.secho(
                f"error: {len(failed)} of {len(versions)} versions of {cfg.model_name!r} failed "
                f"verification ({', '.join(f'v{n}' for n in failed)}); do not serve them: each "
                "line above names the file and the fix",
                err=True,
                fg=typer.colors.RED,
            )
            raise typer.Exit(code=2)

    run_or_exit(body)


@app.command()
def serve(
    config: ConfigOpt = Path("driftloop.yaml"),
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Serve models:/<model_name>@champion over HTTP, logging every prediction."""
    from serving.server import load_serving_config, run

    run_or_exit(lambda: load_serving_config(config))
    run(config, host=host, port=port, workers=workers)


@app.command()
def monitor(config: ConfigOpt = Path("driftloop.yaml")) -> None:
    """Run the monitor once: drift, quality and performance of the latest window; alert and retrain."""
    from driftloop.config import load_config

    run_or_exit(lambda: load_config(config))
    from flows.monitor import monitor as monitor_flow

    summary = run_or_exit(lambda: monitor_flow(config_path=str(config)))
    typer.echo(
        f"{summary['model_name']} v{summary['version']}: {summary['status']} over {summary['window_rows']} rows"
        f"\n  alert: {summary['alert_reason']}\n  retrain: {summary['retrain_reason']}"
    )


@app.command()
def retrain(
    config: ConfigOpt = Path("driftloop.yaml"),
    reason: Annotated[str, typer.Option(help="recorded on the new version")] = "manual",
) -> None:
    """Train a challenger on recent labeled traffic; promote it only if it beats the champion."""
    from driftloop.config import load_config

    run_or_exit(lambda: load_config(config))
    from flows.retrain import RetrainRefused
    from flows.retrain import retrain as retrain_flow

    try:
        outcome = run_or_exit(lambda: retrain_flow(config_path=str(config), reason=reason))
    except RetrainRefused as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from None
    verdict = "promoted to champion" if outcome["promoted"] else "registered as challenger"
    typer.echo(
        f"{outcome['model_name']} version {outcome['version']} {verdict}: {outcome['reason']}"
    )


@app.command()
def score(
    source: Annotated[
        str, typer.Argument(help="a .csv/.parquet file, or a SQLAlchemy URL with --query")
    ],
    config: ConfigOpt = Path("driftloop.yaml"),
    query: Annotated[str | None, typer.Option(help="SELECT for a SQL source")] = None,
    output: Annotated[
        str | None, typer.Option(help="write request ids and predictions here")
    ] = None,
) -> None:
    """Batch-score a file or table with the champion; every row is logged for monitoring."""
    from driftloop.config import load_config

    run_or_exit(lambda: load_config(config))
    from flows.score import batch_score

    result = run_or_exit(
        lambda: batch_score(source=source, query=query, output=output, config_path=str(config))
    )
    typer.echo(f"scored and logged {result['rows']} rows with version {result['model_version']}")


@app.command()
def backtest(
    config: ConfigOpt,
    live: Annotated[Path, typer.Option("--live", help="live rows, CSV or Parquet, in time order")],
    batch_rows: Annotated[int, typer.Option("--batch-rows", help="rows per batch")],
    out: Annotated[Path, typer.Option("--out", help="where to write SUMMARY.json")],
    labels: Annotated[
        Path | None, typer.Option("--labels", help="id_column + target, CSV or Parquet")
    ] = None,
    label_delay_batches: Annotated[
        int, typer.Option("--label-delay-batches", help="labels arrive K batches later")
    ] = 0,
    workdir: Annotated[
        Path | None, typer.Option("--workdir", help="fresh state goes here (default: a temp dir)")
    ] = None,
    batch_hours: Annotated[
        float, typer.Option("--batch-hours", help="simulated hours per batch (cooldowns)")
    ] = 24.0,
) -> None:
    """Replay the monitoring and retraining policy on history and write a summary."""
    import tempfile

    from driftloop.config import load_config

    cfg = run_or_exit(lambda: load_config(config))
    from flows.backtest import BacktestError, check_arguments, write_summary
    from flows.backtest import backtest as backtest_flow

    work = workdir or Path(tempfile.mkdtemp(prefix="driftloop-backtest-"))
    try:
        run_or_exit(
            lambda: check_arguments(
                cfg,
                live,
                labels,
                batch_rows=batch_rows,
                label_delay_batches=label_delay_batches,
                workdir=work,
            )
        )
        summary = run_or_exit(
            lambda: backtest_flow(
                cfg,
                live,
                labels,
                batch_rows=batch_rows,
                label_delay_batches=label_delay_batches,
                workdir=work,
                batch_hours=batch_hours,
            )
        )
    except BacktestError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from None
    write_summary(summary, out)
    typer.echo(
        f"{len(summary['batches'])} batches: {summary['alerts']} alerts, {summary['retrains']} retrains, "
        f"{summary['promotions']} promotions; summary in {out}, state in {work}"
    )


@app.command()
def demo(
    scenario: Annotated[
        str, typer.Option(help="none | gradual | sudden | broken-feature")
    ] = "sudden",
    monitor_every: Annotated[
        int, typer.Option(help="run the monitor after this many live rows")
    ] = 20_000,
    sample_every: Annotated[
        int, typer.Option(help="send every Nth live row (1 = all 208,892)")
    ] = 1,
    out: Annotated[Path, typer.Option(help="where the timeline plot and latest report go")] = Path(
        "demo-report"
    ),
    state: Annotated[
        Path, typer.Option(help="demo state (registry, log, workspace); wiped first")
    ] = Path(".driftloop/demo"),
) -> None:
    """The whole loop on the shipped data: train, serve, traffic with drift, monitor, retrain, hot swap."""
    from driftloop.scenarios import SCENARIOS
    from flows.demo import DemoError, run_demo

    if scenario not in SCENARIOS:
        typer.secho(
            f"error: unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(code=2)
    try:
        run_or_exit(
            lambda: run_demo(
                scenario,
                monitor_every=monitor_every,
                sample_every=sample_every,
                out_dir=out,
                state=state,
                echo=typer.echo,
            )
        )
    except DemoError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from None


@app.command()
def stack(
    action: Annotated[str, typer.Argument(help="up | down | status")],
    root: Annotated[Path, typer.Option(help="the repo checkout the services run from")] = Path("."),
) -> None:
    """The production topology on one machine: Prefect server + worker + deployments, MLflow, serving, Evidently UI."""
    import json as _json
    import os as _os

    from driftloop import stack as stack_mod

    root = root.resolve()
    if action == "up":
        try:
            state = stack_mod.start_stack(
                root, db_url=_os.environ.get("DRIFTLOOP_STACK_DB") or None, echo=typer.echo
            )
        except stack_mod.StackError as exc:
            typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
            raise typer.Exit(code=2) from None
        for name, url in state.urls().items():
            typer.echo(f"  {name:<10} {url}")
    elif action == "down":
        stopped = stack_mod.stop_stack(root, echo=typer.echo)
        typer.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    elif action == "status":
        typer.echo(_json.dumps(stack_mod.stack_status(root), indent=2, default=str))
    else:
        typer.secho(
            f"error: unknown action {action!r}; use up, down or status",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(code=2)


@app.command()
def ui(
    host: Annotated[
        str, typer.Option(help="bind address (loopback: the Evidently UI has no login)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8001,
) -> None:
    """Open the Evidently UI on the workspace (drift dashboards per model)."""
    from driftloop.settings import Settings
    from monitoring.workspace import serve_ui

    settings = Settings()
    typer.echo(f"Evidently UI on http://{host}:{port} (workspace {settings.workspace})")
    raise typer.Exit(serve_ui(settings.workspace, host, port))


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())
