"""The shipped Prometheus alert rules, checked and unit-tested with promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

RULES_DIR = Path(__file__).resolve().parents[2] / "monitoring" / "prometheus"
RULES = RULES_DIR / "driftloop-rules.yml"
RULES_TEST = RULES_DIR / "rules_test.yml"
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found: install the Debian package 'prometheus' (make system-deps)",
)

EXPECTED_ALERTS = {
    "DatasetDrift",
    "ModelHarm",
    "MonitorStale",
    "HighErrorRate",
    "HighLatencyP99",
    "InferenceLogBacklog",
}


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_rules_file_declares_every_alert_with_severity_and_summary() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} == EXPECTED_ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_every_alert_has_a_promtool_test() -> None:
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"]}
    assert tested == EXPECTED_ALERTS


@needs_promtool
def test_promtool_check_rules() -> None:
    result = _promtool("check", "rules", RULES.name, cwd=RULES_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_test_rules() -> None:
    result = _promtool("test", "rules", RULES_TEST.name, cwd=RULES_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
@pytest.mark.parametrize(
    ("original", "broken"),
    [
        (
            "max by (model, version) (driftloop_monitor_severity) == 2",
            "max by (model, version) (driftloop_monitor_severity) >= 1",
        ),
        (
            "(max by (model) (driftloop_monitor_severity) == 1)",
            "(max by (model) (driftloop_monitor_severity) >= 1)",
        ),
        ("> 3600", "> 36000"),
        ("for: 30m", "for: 50m"),
        ('driftloop_request_errors_total{status=~"5.."}', "driftloop_request_errors_total"),
        (") > 0.5\n", ") > 5\n"),
        ("driftloop_log_queue_depth) > 1000", "driftloop_log_queue_depth) > 10000"),
    ],
)
def test_promtool_tests_catch_a_changed_rule(tmp_path: Path, original: str, broken: str) -> None:
    text = RULES.read_text()
    assert original in text
    (tmp_path / RULES.name).write_text(text.replace(original, broken, 1))
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    result = _promtool("test", "rules", RULES_TEST.name, cwd=tmp_path)
    assert result.returncode != 0, "the rule tests passed against a broken rule file"
