"""Settings: one typed object from the environment; a bad value is a user-fixable error."""

from __future__ import annotations

import pytest

from core.errors import DriftloopError
from core.settings import Settings, SettingsError


@pytest.mark.parametrize(
    ("value", "mode"), [("full", "FULL"), ("NORMAL", "NORMAL"), ("Extra", "EXTRA")]
)
def test_sqlite_synchronous_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, mode: str
) -> None:
    monkeypatch.setenv("DRIFTLOOP_SQLITE_SYNCHRONOUS", value)
    assert Settings().sqlite_synchronous == mode


def test_sqlite_synchronous_defaults_to_normal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRIFTLOOP_SQLITE_SYNCHRONOUS", raising=False)
    assert Settings().sqlite_synchronous == "NORMAL"


def test_a_bad_value_names_the_variable_and_is_a_driftloop_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRIFTLOOP_SQLITE_SYNCHRONOUS", "off")
    with pytest.raises(
        SettingsError,
        match="DRIFTLOOP_SQLITE_SYNCHRONOUS='OFF': Input should be 'NORMAL', 'FULL' or 'EXTRA'",
    ) as caught:
        Settings()
    assert isinstance(caught.value, DriftloopError)


def test_the_dask_address_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRIFTLOOP_DASK_ADDRESS", raising=False)
    assert Settings().dask_address is None  # the default: a local cluster when partitions are on
    monkeypatch.setenv("DRIFTLOOP_DASK_ADDRESS", "tcp://10.0.0.5:8786")
    assert Settings().dask_address == "tcp://10.0.0.5:8786"
