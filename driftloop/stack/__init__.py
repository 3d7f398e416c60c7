"""`make stack`: the production topology on one machine, as separate processes on loopback.

Started in order, each waited for on its HTTP health endpoint:

1. a Dask scheduler and 2 workers (every other process gets ``DRIFTLOOP_DASK_ADDRESS``),
2. a Prefect server (PostgreSQL when ``DRIFTLOOP_STACK_DB`` is a PostgreSQL URL, else SQLite),
3. the ``driftloop`` process work pool and a process worker,
4. ``prefect deploy --all`` from the repo's ``prefect.yaml``,
5. an MLflow tracking server that also proxies artifacts (``mlflow-artifacts:``),
6. a first champion (``driftloop train``) when the registry has none,
7. the inference service (``serving.server``, what ``driftloop serve`` runs),
8. the Evidently UI on the workspace,
9. Alertmanager (Debian's ``prometheus-alertmanager``), routing to ``DRIFTLOOP_STACK_ALERT_WEBHOOK``,
10. Prometheus, scraping the inference service and evaluating ``monitoring/prometheus``'s rules.

Everything lives under ``ROOT/.driftloop/stack/``: one log per process, ``stack.pids`` and
``state.json`` recording exactly what was started (pid = process group, command, port, URL).
:func:`stop_stack` stops those process groups and nothing else. Every service runs unpatched,
started with its own command line.

Modules:

- :mod:`~driftloop.stack.lifecycle`: up, down, status (:func:`start_stack` is the recipe);
- :mod:`~driftloop.stack.dask_cluster`, :mod:`~driftloop.stack.prefect_server`, :mod:`~driftloop.stack.mlflow_server`,
  :mod:`~driftloop.stack.inference`, :mod:`~driftloop.stack.evidently_ui`, :mod:`~driftloop.stack.alerting`: each
  service's command, settings and health check;
- :mod:`~driftloop.stack.launch`: the ports, environment and state of one start in progress;
- :mod:`~driftloop.stack.backends`: SQLite files or the PostgreSQL databases;
- :mod:`~driftloop.stack.state`: ``state.json`` and ``stack.pids``;
- :mod:`~driftloop.stack.processes`: start, wait for, track and stop one child process.
"""

from driftloop.stack.alerting import AlertingOptions
from driftloop.stack.launch import StackPorts
from driftloop.stack.lifecycle import ALL_SERVICES, stack_status, start_stack, stop_stack
from driftloop.stack.processes import StackError
from driftloop.stack.state import StackState

__all__ = [
    "ALL_SERVICES",
    "AlertingOptions",
    "StackError",
    "StackPorts",
    "StackState",
    "stack_status",
    "start_stack",
    "stop_stack",
]
