"""The `driftloop` command. Errors users can fix are printed as one clear message, no traceback."""

from __future__ import annotations

import getpass
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from core.config import ProjectConfig
    from monitoring.spool import SpoolStatus
    from monitoring.store import LogStatus

app = typer.Typer(
    help="driftloop: train, register, serve, monitor and retrain a scikit-learn model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="path to driftloop.yaml")]


@app.callback()
def _front_door(
    verbose: Annotated[
        bool, typer.Option("--verbose", help="show Prefect's and MLflow's logs in the terminal")
    ] = False,
) -> None:
    """Quiet, offline-friendly defaults for a terminal; a variable the user set explicitly wins.

    Prefect's and MLflow's logs go to a file under the state directory (``--verbose``, before
    or after the command name, keeps them in the terminal: :func:`route_logs`); Prefect's
    ephemeral server would log an ERROR for every telemetry ping it cannot send offline, and
    MLflow draws a progress bar for every artifact download.
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Prefect's ephemeral server waits 20 s for its own start-up by default: too short on a
    # busy two-core machine
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    _VERBOSE["global"] = verbose


#: `driftloop --verbose <command>` (set by the callback); each command also takes --verbose.
_VERBOSE: dict[str, bool] = {}
#: The log file of this command (set by route_logs unless --verbose).
_LOG: dict[str, Path] = {}

VerboseOpt = Annotated[
    bool, typer.Option("--verbose", help="show Prefect's and MLflow's logs in the terminal")
]


def route_logs(verbose: bool) -> None:
    """Send Prefect's and MLflow's logs to the log file unless --verbose (before or after the
    command name). Every command calls it first, before it imports Prefect or MLflow."""
    _LOG.pop("path", None)
    if verbose or _VERBOSE.get("global", False):
        return
    from core.settings import Settings
    from driftloop.logs import log_file, send_logs_to_file

    # a bad DRIFTLOOP_* variable is one error line (Settings raises SettingsError)
    _LOG["path"] = run_or_exit(lambda: send_logs_to_file(log_file(Settings().state_dir)))


T = TypeVar("T")


def fail(message: str) -> NoReturn:
    """Print one ``error:`` line and exit with code 2."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=2)


def run_or_exit(action: Callable[[], T], *, libraries_to_log: bool = False) -> T:
    """Run a command body; a user-fixable error is one ``error:`` line (exit 2), a bug one line
    naming the log file that holds its traceback (exit 1).

    With ``libraries_to_log`` (a body that runs flows) and no ``--verbose``, what libraries
    print to stderr meanwhile goes to the log file; driftloop's error line is printed after.
    """
    from contextlib import nullcontext

    from core.errors import DriftloopError
    from driftloop.logs import stderr_to

    quiet = stderr_to(_LOG["path"]) if libraries_to_log and "path" in _LOG else nullcontext()
    try:
        with quiet:
            return action()
    except DriftloopError as exc:
        fail(str(exc))
    except typer.Exit:
        raise
    except Exception as exc:
        logging.getLogger("driftloop.cli").exception("unexpected failure")
        where = f"; the traceback is in {_LOG['path']}" if "path" in _LOG else ""
        typer.secho(
            f"error: unexpected {type(exc).__name__}: {str(exc)[:300]}{where}",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(code=1) from None


def log_note() -> None:
    """Say once where this command's Prefect and MLflow logs are (nothing with --verbose)."""
    if "path" in _LOG:
        typer.echo(f"Prefect and MLflow logs: {_LOG['path']}")


def ready_for_flows(config: Path) -> ProjectConfig:
    """The config, loaded, and the configured Prefect server, checked: before a flow starts, so
    a bad config or an unreachable server is one line, not a failure deep inside Prefect."""
    from core.config import load_config
    from core.settings import Settings
    from flows.preflight import require_prefect_api

    project = load_config(config)
    require_prefect_api(Settings().prefect_api_url)
    return project


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


@app.command()
def train(
    config: ConfigOpt = Path("driftloop.yaml"),
    verbose: VerboseOpt = False,
) -> None:
    """Ingest, validate, train, evaluate and register a model; promote it only if it beats the champion."""
    route_logs(verbose)
    run_or_exit(lambda: ready_for_flows(config))  # fail fast, before Prefect starts
    from flows.train import train as train_flow

    outcome: dict[str, Any] = run_or_exit(
        lambda: train_flow(config_path=str(config), trigger="manual"), libraries_to_log=True
    )
    verdict = "promoted to champion" if outcome["promoted"] else "registered as challenger"
    typer.echo(
        f"{outcome['model_name']} version {outcome['version']} {verdict}: {outcome['reason']}"
    )
    log_note()


@app.command()
def promote(
    version: Annotated[int, typer.Option("--version", "-v", help="model version to make champion")],
    config: ConfigOpt = Path("driftloop.yaml"),
    reason: Annotated[str, typer.Option(help="recorded on the version")] = "manual promotion",
    verbose: VerboseOpt = False,
) -> None:
    """Point the `champion` alias at a version (the server picks it up without restart)."""
    route_logs(verbose)
    import registry
    from core.config import load_config
    from core.settings import Settings

    def body() -> None:
        from flows.champion import promote_by_hand

        cfg = load_config(config)
        settings = Settings()
        client = registry.make_client(settings.mlflow_tracking_uri)
        previous = promote_by_hand(
            settings, client, cfg.model_name, version, reason=reason, actor=_actor()
        )
        typer.echo(
            f"{cfg.model_name}: champion is now version {version} (was {previous or 'none'})"
        )

    run_or_exit(body)


def _answer(version: int, config: Path, note: str, verbose: bool, *, approve: bool) -> None:
    route_logs(verbose)
    import registry
    from core.config import load_config
    from core.settings import Settings

    def body() -> None:
        from flows.approval import decide

        cfg = load_config(config)
        settings = Settings()
        client = registry.make_client(settings.mlflow_tracking_uri)
        typer.echo(
            decide(cfg, settings, client, version, approve=approve, note=note, actor=_actor())
        )

    run_or_exit(body)


@app.command()
def approve(
    version: Annotated[int, typer.Option("--version", "-v", help="the version waiting")],
    config: ConfigOpt = Path("driftloop.yaml"),
    note: Annotated[str, typer.Option(help="recorded with the answer")] = "",
    verbose: VerboseOpt = False,
) -> None:
    """Approve a promotion waiting for a person (`promotion.approval: manual`)."""
    _answer(version, config, note, verbose, approve=True)


@app.command()
def reject(
    version: Annotated[int, typer.Option("--version", "-v", help="the version waiting")],
    config: ConfigOpt = Path("driftloop.yaml"),
    note: Annotated[str, typer.Option(help="recorded with the answer")] = "",
    verbose: VerboseOpt = False,
) -> None:
    """Reject a promotion waiting for a person: the champion stays."""
    _answer(version, config, note, verbose, approve=False)


@app.command()
def rollback(
    config: ConfigOpt = Path("driftloop.yaml"),
    verbose: VerboseOpt = False,
) -> None:
    """Move `champion` back to the previous champion."""
    route_logs(verbose)
    import registry
    from core.config import load_config
    from core.settings import Settings

    def body() -> None:
        from flows.champion import rollback_by_hand

        cfg = load_config(config)
        settings = Settings()
        client = registry.make_client(settings.mlflow_tracking_uri)
        old, new = rollback_by_hand(settings, client, cfg.model_name, actor=_actor())
        typer.echo(f"{cfg.model_name}: champion rolled back from version {old} to version {new}")

    run_or_exit(body)


@app.command()
def versions(
    config: ConfigOpt = Path("driftloop.yaml"),
    verbose: VerboseOpt = False,
) -> None:
    """List the registered versions with their role, metric and trigger."""
    route_logs(verbose)
    import registry
    from core.config import load_config
    from core.settings import Settings

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
            shadow = mv.tags.get(registry.SHADOW_TAG)
            if shadow and role == "challenger":
                typer.echo(f"{'':>7}  live, in the shadow: {shadow}")

    run_or_exit(body)


@app.command()
def verify(
    config: ConfigOpt = Path("driftloop.yaml"),
    version: Annotated[
        int | None, typer.Option("--version", "-v", help="check only this version")
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Check every version's stored files (model and reference) against its integrity record."""
    route_logs(verbose)
    import registry
    from core.config import load_config
    from core.settings import Settings

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
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes")] = 1,
    verbose: VerboseOpt = False,
) -> None:
    """Serve models:/<model_name>@champion over HTTP, logging every prediction."""
    route_logs(verbose)
    from serving.server import load_serving_config, run

    run_or_exit(lambda: load_serving_config(config))
    run_or_exit(lambda: run(config, host=host, port=port, workers=workers))


@app.command()
def monitor(
    config: ConfigOpt = Path("driftloop.yaml"),
    verbose: VerboseOpt = False,
) -> None:
    """Run the monitor once: drift, quality and performance of the latest window; alert and retrain."""
    route_logs(verbose)
    run_or_exit(lambda: ready_for_flows(config))
    from flows.monitor import monitor as monitor_flow

    summary = run_or_exit(lambda: monitor_flow(config_path=str(config)), libraries_to_log=True)
    typer.echo(
        f"{summary['model_name']} v{summary['version']}: {summary['status']} over {summary['window_rows']} rows"
        f"\n  alert: {summary['alert_reason']}\n  retrain: {summary['retrain_reason']}"
    )
    if summary.get("rolled_back_to") is not None:
        typer.echo(
            f"  rolled back: v{summary['rolled_back_to']} is champion again: "
            f"{summary['rollback_reason']}"
        )
    log_note()


@app.command("check-monitor")
def check_monitor(
    config: ConfigOpt = Path("driftloop.yaml"),
    prefect_yaml: Annotated[
        Path, typer.Option(help="where the monitor deployment's schedule is declared")
    ] = Path("prefect.yaml"),
    every_minutes: Annotated[
        float | None,
        typer.Option(min=0.01, help="the monitor's schedule interval (instead of prefect.yaml)"),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Alert monitor_stale to the webhooks and notification blocks when the monitor stopped running."""
    from datetime import timedelta

    route_logs(verbose)
    from core.config import load_config
    from core.settings import Settings
    from driftloop.schedule import monitor_interval

    project = run_or_exit(lambda: load_config(config))
    interval = (
        timedelta(minutes=every_minutes)
        if every_minutes is not None
        else run_or_exit(lambda: monitor_interval(prefect_yaml))
    )
    from flows.staleness import check_monitor as check

    found = run_or_exit(
        lambda: check(project, Settings(), interval=interval), libraries_to_log=True
    )
    if not found.staleness.stale:
        typer.echo(f"{project.model_name}: ok: {found.staleness.reason}")
        return
    sent = [d.sink for d in found.deliveries] + [b.block for b in found.blocks if b.ok]
    missed = [f"{b.block}: {b.error}" for b in found.blocks if not b.ok]
    typer.echo(
        f"{project.model_name}: monitor_stale: {found.staleness.reason}"
        f"\n  alerted: {', '.join(sent) or 'no sink configured (alerts.webhooks, alerts.prefect_blocks)'}"
        + (f"\n  not delivered: {'; '.join(missed)}" if missed else "")
    )


@app.command()
def retrain(
    config: ConfigOpt = Path("driftloop.yaml"),
    reason: Annotated[str, typer.Option(help="recorded on the new version")] = "manual",
    verbose: VerboseOpt = False,
) -> None:
    """Train a challenger on recent labeled traffic; promote it only if it beats the champion."""
    route_logs(verbose)
    run_or_exit(lambda: ready_for_flows(config))
    from flows.retrain import retrain as retrain_flow

    outcome = run_or_exit(
        lambda: retrain_flow(config_path=str(config), reason=reason), libraries_to_log=True
    )
    verdict = "promoted to champion" if outcome["promoted"] else "registered as challenger"
    typer.echo(
        f"{outcome['model_name']} version {outcome['version']} {verdict}: {outcome['reason']}"
    )
    log_note()


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
    partitions: Annotated[
        int,
        typer.Option(
            min=0,
            help="score as N Prefect tasks on Dask (DRIFTLOOP_DASK_ADDRESS, else a local "
            "cluster of 2 worker processes); 0: in this process",
        ),
    ] = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Batch-score a file or table with the champion; every row is logged for monitoring."""
    route_logs(verbose)
    run_or_exit(lambda: ready_for_flows(config))
    from flows.score import batch_score

    result = run_or_exit(
        lambda: batch_score(
            source=source,
            query=query,
            output=output,
            config_path=str(config),
            partitions=partitions,
        ),
        libraries_to_log=True,
    )
    typer.echo(f"scored and logged {result['rows']} rows with version {result['model_version']}")
    log_note()


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
    compare_every: Annotated[
        int | None,
        typer.Option(
            "--compare-every",
            help="also replay a fixed schedule: retrain every K batches (same data policy)",
            min=1,
        ),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Replay the monitoring and retraining policy on history and write a summary."""
    route_logs(verbose)
    import tempfile

    cfg = run_or_exit(lambda: ready_for_flows(config))
    from flows.backtest import backtest as backtest_flow
    from flows.backtest import check_arguments, summary_lines, write_summary

    work = workdir or Path(tempfile.mkdtemp(prefix="driftloop-backtest-"))
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
            compare_every=compare_every,
        ),
        libraries_to_log=True,
    )
    write_summary(summary, out)
    for line in summary_lines(summary):
        typer.echo(line)
    typer.echo(
        f"{len(summary['batches'])} batches: {summary['alerts']} alerts, {summary['retrains']} retrains, "
        f"{summary['promotions']} promotions; summary in {out}, state in {work}"
    )
    log_note()


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
    verbose: VerboseOpt = False,
) -> None:
    """The whole loop on the shipped data: train, serve, traffic with drift, monitor, retrain, hot swap."""
    route_logs(verbose)
    from core.settings import Settings
    from flows.preflight import require_prefect_api
    from pipelines.scenarios import SCENARIOS

    if scenario not in SCENARIOS:
        fail(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    run_or_exit(lambda: require_prefect_api(Settings().prefect_api_url))
    from flows.demo import run_demo

    typer.echo(
        f"driftloop demo: scenario '{scenario}' on the shipped employment data (state in {state})"
    )
    log_note()
    run_or_exit(
        lambda: run_demo(
            scenario,
            monitor_every=monitor_every,
            sample_every=sample_every,
            out_dir=out,
            state=state,
            echo=typer.echo,
        ),
        libraries_to_log=True,
    )


@app.command()
def stack(
    action: Annotated[str, typer.Argument(help="up | down | status")],
    root: Annotated[Path, typer.Option(help="the repo checkout the services run from")] = Path("."),
    verbose: VerboseOpt = False,
) -> None:
    """The production topology on one machine: Prefect server + worker + deployments, MLflow, serving, Evidently UI, Alertmanager, Prometheus."""
    route_logs(verbose)
    import json as _json

    from core.settings import Settings
    from driftloop import stack as stack_mod

    root = root.resolve()
    if action == "up":
        state = run_or_exit(
            lambda: stack_mod.start_stack(
                root,
                db_url=Settings().stack_db or None,
                alerting_options=stack_mod.AlertingOptions(
                    alert_webhook=Settings().stack_alert_webhook or None
                ),
                echo=typer.echo,
            )
        )
        for name, url in state.urls().items():
            typer.echo(f"  {name:<10} {url}")
    elif action == "down":
        stopped = stack_mod.stop_stack(root, echo=typer.echo)
        typer.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    elif action == "status":
        typer.echo(_json.dumps(stack_mod.stack_status(root), indent=2, default=str))
    else:
        fail(f"unknown action {action!r}; use up, down or status")


#: `driftloop log status` waits this long for any one statement of the inference log
_STATUS_STATEMENT_TIMEOUT_S = 30.0


@app.command()
def log(
    action: Annotated[str, typer.Argument(help="status | compact")],
    config: ConfigOpt = Path("driftloop.yaml"),
    newest: Annotated[int, typer.Option(help="how many of the newest dead letters to show")] = 5,
    verbose: VerboseOpt = False,
) -> None:
    """The inference log: rows per model version, labels, dead letters, records waiting in the
    spool (status); or put the rows no columnar segment holds yet into segments (compact)."""
    route_logs(verbose)
    if action not in ("status", "compact"):
        fail(f"unknown action {action!r}; use status or compact")
    if action == "compact":
        run_or_exit(lambda: _log_compact(config))
        return
    from core.config import load_config
    from core.settings import Settings
    from monitoring import spool, store

    def body() -> None:
        cfg = load_config(config)
        settings = Settings()
        url = settings.database_url
        engine = store.make_engine(
            url,
            statement_timeout_seconds=_STATUS_STATEMENT_TIMEOUT_S,
            synchronous=settings.sqlite_synchronous,
        )
        try:
            status = store.read_log_status(engine, newest=newest)
        finally:
            engine.dispose()
        base = cfg.serving.resolved_spool_dir(cfg.base_dir)
        pending = spool.spool_status(spool.spool_directory(base, url))
        safe_url = engine.url.render_as_string(hide_password=True)
        for line in _log_status_lines(safe_url, status, pending):
            typer.echo(line)

    run_or_exit(body)


def _log_compact(config: Path) -> None:
    """`driftloop log compact`: compaction with the champion's features, as the monitor does."""
    import registry
    from core.config import load_config
    from core.settings import Settings
    from flows.monitor import compact_served_log, compaction_sentence
    from monitoring import store

    cfg = load_config(config)
    settings = Settings()
    champion = registry.get_alias(
        registry.make_client(settings.mlflow_tracking_uri), cfg.model_name
    )
    if champion is None:
        fail(f"{cfg.model_name} has no champion: compaction takes the champion's features")
    store.upgrade_database(settings.database_url)
    engine = store.make_engine(settings.database_url, synchronous=settings.sqlite_synchronous)
    try:
        outcome = compact_served_log(engine, cfg, registry.version_info(champion))
    finally:
        engine.dispose()
    typer.echo(f"{cfg.model_name}: {compaction_sentence(outcome)}")


def _log_status_lines(url: str, status: LogStatus, pending: SpoolStatus) -> list[str]:
    """`driftloop log status` as text lines."""
    lines = [f"inference log {url}"]
    lines.append(f"  {'model':<24} {'version':>7} {'rows':>10} {'labeled':>10}")
    for v in status.versions:
        lines.append(f"  {v.model_name:<24} {v.model_version:>7} {v.rows:>10} {v.labeled:>10}")
    if not status.versions:
        lines.append("  (no rows logged yet)")
    lines.append(f"dead letters: {status.dead_letters} in the table")
    for d in status.newest_dead_letters:
        when = d.created_at.isoformat(timespec="seconds")
        lines.append(
            f"  {when} request {d.request_id} {d.model_name} v{d.model_version}: {d.error}"
        )
    lines.append(f"spool {pending.directory}: {pending.files} files, {pending.rows} rows pending")
    lines.append(f"dead-letter file {pending.dead_letter_file}: {pending.dead_letter_rows} records")
    return lines


@app.command()
def ui(
    host: Annotated[
        str, typer.Option(help="bind address (loopback: the Evidently UI has no login)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8001,
    verbose: VerboseOpt = False,
) -> None:
    """Open the Evidently UI on the workspace (drift dashboards per model)."""
    route_logs(verbose)
    from core.settings import Settings
    from monitoring.workspace import serve_ui

    settings = Settings()
    typer.echo(f"Evidently UI on http://{host}:{port} (workspace {settings.workspace})")
    raise typer.Exit(serve_ui(settings.workspace, host, port))


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())
