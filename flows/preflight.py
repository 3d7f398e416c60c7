"""Before a flow starts: is the configured Prefect server there? One clear error if not.

With ``PREFECT_API_URL`` unset, flows run on Prefect's ephemeral server (started in-process) and
there is nothing to check. With it set, every flow run is created on that server; unreachable,
Prefect would fail deep inside the flow call, after its own connection retries.
"""

from __future__ import annotations

from core.errors import DriftloopError


class PrefectUnreachableError(DriftloopError, ConnectionError):
    """The Prefect server the environment names does not answer; the message names it."""

    transient = True


def require_prefect_api(api_url: str | None) -> None:
    """Raise :class:`PrefectUnreachableError` when ``api_url`` is set and does not answer.

    Uses Prefect's own client (its settings: the same ``PREFECT_API_URL``, any API key).
    """
    if not api_url:
        return
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        problem = client.api_healthcheck()
    if problem is not None:
        raise PrefectUnreachableError(
            f"the Prefect server at PREFECT_API_URL={api_url} does not answer "
            f"({type(problem).__name__}: {str(problem)[:200]}); start it (`prefect server start` "
            "or `driftloop stack up`), or unset PREFECT_API_URL to run on Prefect's ephemeral server"
        )
