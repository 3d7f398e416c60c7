"""The monitoring section of the config: defaults, validation, frozen."""

from __future__ import annotations

import pydantic
import pytest

from core.config_monitoring import DriftConfig, MonitoringConfig, PolicyConfig


def test_defaults_are_the_measured_ones() -> None:
    config = MonitoringConfig()
    assert config.drift.method == "driftloop" and config.drift.alpha == 0.01
    assert config.drift.dataset_share() is None  # any drifted feature, errors controlled
    assert config.window.kind == "last_rows" and config.min_window_rows == 500
    assert config.policy.drop_alpha == 0.01 and config.policy.min_relative_drop == 0.01
    assert config.policy.cooldown_hours == 24 and config.policy.max_retrains_per_incident == 3
    assert config.retrain.data_policy == "adaptive"


def test_the_replaced_absolute_drop_says_what_replaced_it() -> None:
    with pytest.raises(pydantic.ValidationError, match="drop_alpha.*min_relative_drop"):
        PolicyConfig.model_validate({"max_performance_drop": 0.02})


def test_named_methods_use_evidentlys_share_unless_set() -> None:
    assert DriftConfig(method="wasserstein").dataset_share() == 0.5
    assert DriftConfig(method="psi", drift_share=0.2).dataset_share() == 0.2


def test_parses_a_yaml_like_mapping() -> None:
    config = MonitoringConfig.model_validate(
        {
            "window": {"kind": "last_hours", "hours": 6},
            "drift": {"per_column_method": {"AGEP": "psi"}, "per_column_threshold": {"AGEP": 0.2}},
            "policy": {"checks": ["data_drift", "performance"], "max_retrains_per_day": 1},
            "retrain": {"data_policy": "expanding", "include_reference": False},
        }
    )
    assert config.drift.per_column_method == {"AGEP": "psi"}
    assert config.policy.checks == ("data_drift", "performance")


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"windw": {}}, "windw"),
        ({"drift": {"method": "magic"}}, "method"),
        ({"drift": {"per_column_method": {"AGEP": "t-test"}}}, "AGEP"),
        ({"policy": {"checks": ["vibes"]}}, "checks"),
        ({"drift": {"alpha": 1.5}}, "alpha"),
        ({"window": {"kind": "last_rows", "rows": 0}}, "rows"),
    ],
)
def test_invalid_settings_name_the_key(data: dict, needle: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=needle):
        MonitoringConfig.model_validate(data)


def test_frozen() -> None:
    with pytest.raises(pydantic.ValidationError):
        PolicyConfig().cooldown_hours = 1  # type: ignore[misc]


def test_partitions_default_to_the_single_process_engine_and_are_not_negative() -> None:
    assert MonitoringConfig().partitions == 0  # no cluster needed
    assert MonitoringConfig(partitions=4).partitions == 4
    with pytest.raises(pydantic.ValidationError, match="partitions"):
        MonitoringConfig.model_validate({"partitions": -1})


def test_column_tasks_are_off_by_default_and_exclude_row_partitions() -> None:
    assert MonitoringConfig().columns_per_task == 0  # the monitor reads the window itself
    assert MonitoringConfig(columns_per_task=6).columns_per_task == 6
    with pytest.raises(pydantic.ValidationError, match="columns_per_task"):
        MonitoringConfig.model_validate({"columns_per_task": -2})
    with pytest.raises(pydantic.ValidationError, match="partitions and monitoring.columns_per"):
        MonitoringConfig.model_validate({"partitions": 2, "columns_per_task": 3})
