"""An optional person between the gate and the alias (``promotion.approval: manual``).

When the gate says yes, the version waits with its evidence: the decision, as a Prefect artifact
and on the version's tags. With a Prefect server (``PREFECT_API_URL`` set), the flow run pauses
with a typed form (:class:`Approval`): a person approves or rejects it in the Prefect UI or with
``driftloop approve/reject --version N``, which resume the paused run with that input; no answer
within ``promotion.approval_timeout_hours`` leaves the champion unchanged. On Prefect's ephemeral
server (nothing to pause for), the version stays a challenger awaiting approval, and the same
commands decide it later (the promotion is still a compare-and-set against the champion the gate
judged it against).
"""

from __future__ import annotations

import dataclasses
from typing import Any
from uuid import UUID

from mlflow import MlflowClient
from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import FlowPauseTimeout, NotPausedError
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run

import registry
from core.config import ProjectConfig
from core.errors import DriftloopError
from core.settings import Settings
from pipelines.promotion import PromotionDecision

AWAITING = "awaiting"
#: tag: awaiting / approved / rejected / timed_out, with the flow run that waits for it
APPROVAL_TAG = registry.TAG + "approval"
APPROVAL_RUN_TAG = registry.TAG + "approval_flow_run"
JUDGED_TAG = registry.TAG + "approval_judged_against"


def prefect_server() -> str | None:
    """The Prefect API flows report to (None: Prefect's ephemeral in-process server)."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


class Approval(RunInput):
    """What a person answers when a promotion waits for approval."""

    approve: bool
    note: str = ""


def evidence_markdown(config: ProjectConfig, version: int, decision: PromotionDecision) -> str:
    """What the person sees before deciding (pure)."""
    champion = "none" if decision.champion is None else f"{decision.champion:.4f}"
    interval = decision.difference.text() if decision.difference is not None else "no champion"
    return "\n".join(
        [
            f"### {config.model_name} v{version} waits for approval",
            f"The gate says **promote**: {decision.reason}",
            "",
            "| | value |",
            "|---|---|",
            f"| {decision.metric} (candidate) | {decision.candidate:.4f} |",
            f"| {decision.metric} (champion) | {champion} |",
            f"| improvement | {interval} |",
            "",
            f"Approve or reject: resume this flow run in the Prefect UI, or run "
            f"`driftloop approve --version {version}` / `driftloop reject --version {version}`.",
        ]
    )


def answered(decision: PromotionDecision, answer: Approval | None) -> PromotionDecision:
    """The gate's decision after a person's answer (None: no answer in time) (pure)."""
    if answer is None:
        return dataclasses.replace(
            decision,
            promote=False,
            reason=f"no approval in time (champion unchanged); the gate said: {decision.reason}",
        )
    note = f" ({answer.note})" if answer.note else ""
    if answer.approve:
        return dataclasses.replace(decision, reason=f"approved{note}: {decision.reason}")
    return dataclasses.replace(
        decision, promote=False, reason=f"rejected{note}; the gate said: {decision.reason}"
    )


def ask_approval(
    config: ProjectConfig,
    settings: Settings,
    client: MlflowClient,
    *,
    version: int,
    decision: PromotionDecision,
    against: int | None,
) -> PromotionDecision:
    """Wait for a person's answer to a promotion the gate allowed (``promotion.approval:
    manual``); returns the decision to act on. Without a Prefect server to pause on, the version
    waits (a refusal now) and ``driftloop approve`` decides it later."""
    logger = get_run_logger()
    run_id = str(flow_run.id) if flow_run.id else ""
    key = config.model_name.lower().replace("_", "-")
    create_markdown_artifact(
        evidence_markdown(config, version, decision),
        key=f"{key}-approval",
        description="a promotion waiting for approval",
    )
    tags = {APPROVAL_TAG: AWAITING, APPROVAL_RUN_TAG: run_id, JUDGED_TAG: str(against or "none")}
    for name, value in tags.items():
        client.set_model_version_tag(config.model_name, str(version), name, value)
    if not prefect_server() or not run_id:
        reason = (
            f"awaiting approval (promotion.approval: manual): `driftloop approve --version "
            f"{version}` or `driftloop reject --version {version}`; the gate said: {decision.reason}"
        )
        logger.warning("%s v%s: %s", config.model_name, version, reason)
        return dataclasses.replace(decision, promote=False, reason=reason)
    timeout = max(1, int(config.promotion.approval_timeout_hours * 3600))
    logger.warning(
        "%s v%s waits for approval (flow run %s, at most %s s)",
        config.model_name,
        version,
        run_id,
        timeout,
    )
    try:
        answer: Any = pause_flow_run(
            wait_for_input=Approval, timeout=timeout, poll_interval=2, key=f"approve-v{version}"
        )
    except FlowPauseTimeout:
        answer = None
    final = answered(decision, answer)
    state = "timed_out" if answer is None else ("approved" if answer.approve else "rejected")
    client.set_model_version_tag(config.model_name, str(version), APPROVAL_TAG, state)
    return final


class ApprovalError(DriftloopError):
    """The version does not wait for approval, or its flow run no longer does."""


def decide(
    config: ProjectConfig,
    settings: Settings,
    client: MlflowClient,
    version: int,
    *,
    approve: bool,
    note: str,
    actor: str,
) -> str:
    """A person's answer to a promotion waiting for approval (``driftloop approve/reject``):
    resume its paused flow run with the answer, or, when nothing waits on a server, act on it
    here (approve: compare-and-set against the champion the gate judged it against)."""
    from prefect.flow_runs import resume_flow_run

    from flows.champion import promote_if_unchanged

    mv = registry.get_version(client, config.model_name, version)
    tags = mv.tags or {}
    if tags.get(APPROVAL_TAG) != AWAITING:
        state = tags.get(APPROVAL_TAG, "never asked")
        raise ApprovalError(
            f"{config.model_name} v{version} does not wait for approval ({state}); "
            "`driftloop versions` lists the versions"
        )
    run_id = tags.get(APPROVAL_RUN_TAG, "")
    if prefect_server() and run_id:
        try:
            resume_flow_run(UUID(run_id), run_input={"approve": approve, "note": note})
        except (FlowPauseTimeout, NotPausedError) as exc:
            raise ApprovalError(
                f"the flow run {run_id} of v{version} no longer waits ({exc}); retrain or "
                "`driftloop promote` by hand"
            ) from None
        verb = (
            "promotes it if the champion is still the one it was judged against"
            if approve
            else "keeps the champion"
        )
        return f"{config.model_name} v{version}: resumed flow run {run_id}, which {verb}"
    if not approve:
        client.set_model_version_tag(config.model_name, str(version), APPROVAL_TAG, "rejected")
        return f"{config.model_name} v{version}: rejected; it stays a challenger"
    judged = tags.get(JUDGED_TAG, "none")
    move = promote_if_unchanged(
        settings,
        client,
        config.model_name,
        version,
        expected=None if judged == "none" else int(judged),
        reason=f"approved by {actor}" + (f" ({note})" if note else ""),
        actor=actor,
    )
    if not move.moved:
        raise ApprovalError(
            f"{config.model_name} v{version} was judged against v{judged}, but `champion` is "
            f"v{move.found} now: retrain to judge it again, or `driftloop promote` by hand"
        )
    client.set_model_version_tag(config.model_name, str(version), APPROVAL_TAG, "approved")
    return f"{config.model_name}: champion is now version {version} (approved)"
