"""The `driftloop` command. Errors users can fix are printed as one clear message, no traceback."""

from __future__ import annotations

import getpass
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
T = TypeVar("T")


def _user_errors() -> tuple[type[BaseException], ...]:
    from driftloop.config import ConfigError
    from driftloop.io import DataSourceError
    from driftloop.registry import ModelNotFoundError
    from pipelines.validation import DataValidationError

    return (
        ConfigError,
        DataSourceError,
        ModelNotFoundError,
        DataValidationError,
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


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())
