"""The stack's inference service (``serving.server``, what ``driftloop serve`` runs) and the first
champion it serves (``driftloop train`` when the registry has none)."""

from __future__ import annotations

import sys
from pathlib import Path

from driftloop.stack.launch import Launch
from driftloop.stack.mlflow_server import champion_exists
from driftloop.stack.processes import HOST, StackError, wait_healthy


def model_name_of(config_path: Path) -> str:
    """The config's ``model_name``.

    Raises:
        StackError: the config has none.
    """
    import yaml

    raw = yaml.safe_load(config_path.read_text()) or {}
    name = raw.get("model_name")
    if not name:
        raise StackError(f"{config_path} has no model_name")
    return str(name)


def cli_command(*args: str) -> list[str]:
    """Run driftloop's CLI with this interpreter (no dependence on the console script)."""
    return [
        sys.executable,
        "-c",
        "import sys; from driftloop.cli import app; sys.exit(app())",
        *args,
    ]


def ensure_champion(
    launch: Launch, config_path: Path, *, registry_url: str | None, train: bool, timeout: float
) -> bool:
    """Whether the registry has a champion, after training a first one if ``train`` and it has none.

    A failed training is a note, not an error: the service then stays unready (503).

    Args:
        registry_url: the stack's MLflow server (None: not started, so no champion is found).
        timeout: for the training.
    """
    model_name = model_name_of(config_path)

    def found() -> bool:
        return registry_url is not None and champion_exists(registry_url, model_name)

    has_champion = found()
    if has_champion or not train:
        return has_champion
    launch.echo(f"no champion for {model_name!r}: training one (driftloop train)")
    try:
        launch.run_step(
            "train", cli_command("train", "--config", str(config_path)), timeout=timeout
        )
    except StackError as exc:
        launch.note(
            f"training the first champion failed, the inference service stays unready: {exc}"
        )
    return found()


def start_service(launch: Launch, config_path: Path, *, has_champion: bool) -> None:
    """The inference service on the chosen port; wait for ``/ready`` (``/health`` without a champion)."""
    url = launch.url("serve")
    launch.echo(f"starting inference service on {url}")
    command = [sys.executable, "-m", "serving.server", "--config", str(config_path)]
    command += ["--host", HOST, "--port", str(launch.ports["serve"])]
    health = f"{url}/ready" if has_champion else f"{url}/health"
    record = launch.spawn("serve", command, url=url, health_url=health)
    if not has_champion:
        launch.note("no champion in the registry: /ready answers 503 until one is promoted")
    wait_healthy(record, timeout=launch.timeout)
    launch.record(serve_url=url)
