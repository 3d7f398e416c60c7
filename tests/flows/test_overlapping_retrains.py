"""Two retrains that overlap, in two processes on one MLflow registry (SQLite) and one
inference-log database: both judge their challenger against v1, then both try to move
`champion`; only the first can, the other is judged again against the new champion, and every
promotion in the champion history was judged against the champion it replaced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient
from prefect.settings import PREFECT_API_URL

import registry
from flows.train import train
from tests.conftest import REPO
from tests.flows.conftest import write_config
from tests.flows.test_retrain_alerts import MONITORING, log_drifted_traffic

#: One retrain in its own process. Test code only: the patch holds each process at the gate's
#: compare-and-set until both have judged their challenger (against v1), so they overlap.
RETRAIN = """
import json, sys, time
from pathlib import Path
import flows.register as register
from flows.retrain import retrain

me, other, config = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
real = register.promote_if_unchanged

def held(*args, **kwargs):
    me.touch()
    deadline = time.monotonic() + 300
    while not other.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return real(*args, **kwargs)

register.promote_if_unchanged = held
outcome = retrain(config_path=config, reason=f"overlap {me.name}")
print("OUTCOME " + json.dumps({k: outcome[k] for k in ("version", "promoted", "reason", "previous_champion")}))
"""


def _outcome(stdout: str) -> dict:
    (line,) = [ln for ln in stdout.splitlines() if ln.startswith("OUTCOME ")]
    return json.loads(line.removeprefix("OUTCOME "))


def test_only_a_challenger_judged_against_the_current_champion_takes_the_alias(
    tmp_path: Path, mlflow_env: dict[str, str], small_employment: pd.DataFrame
) -> None:
    config = write_config(tmp_path, small_employment, monitoring=MONITORING)
    train(config_path=str(config))  # v1
    log_drifted_traffic(mlflow_env)  # a challenger learned without age beats v1
    env = {
        **os.environ,
        **mlflow_env,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PYTHONPATH": str(REPO),
    }
    a, b = tmp_path / "a.ready", tmp_path / "b.ready"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RETRAIN, str(me), str(other), str(config)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for me, other in ((a, b), (b, a))
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
        results.append(_outcome(out))

    promoted = [r for r in results if r["promoted"]]
    refused = [r for r in results if not r["promoted"]]
    assert len(promoted) == 1 and len(refused) == 1, results
    (winner,), (loser,) = promoted, refused
    assert winner["previous_champion"] == 1
    # the loser was judged against v1, found the winner in its place and was judged again
    assert loser["reason"].startswith(
        f"judged again (champion is v{winner['version']}, not v1 as when v{loser['version']} "
        "was judged"
    ), loser["reason"]
    assert loser["previous_champion"] == winner["version"]

    client = MlflowClient(mlflow_env["MLFLOW_TRACKING_URI"])
    champion = client.get_model_version_by_alias("employment", registry.CHAMPION)
    assert int(champion.version) == winner["version"]
    history = [h["version"] for h in registry.champion_history(client, "employment")]
    assert history == [1, winner["version"]]
    for before, after in zip(history, history[1:], strict=False):
        tags = client.get_model_version("employment", str(after)).tags
        assert tags[registry.JUDGED_AGAINST_TAG] == str(before)
    loser_tags = client.get_model_version("employment", str(loser["version"])).tags
    assert loser_tags["driftloop.role"] == "challenger"
    assert loser_tags["driftloop.decision"] == loser["reason"]
