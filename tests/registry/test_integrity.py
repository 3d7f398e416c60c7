"""A version's files must be its registered bytes: the record, the checks, and every refusal.

Pure checks on inline data first, then a real MLflow registry in tmp_path whose artifact store
is tampered with the way an attacker with write access to it would.
"""

from __future__ import annotations

import json
import pickle
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import registry
from driftloop.cli import app
from registry import integrity
from tests.conftest import (
    REPO,
    OpensMarker,
    raise_a_coefficient,
    rewrite_parquet,
    stored_model_dir,
    stored_reference,
    swap_in_pickle,
)

MODEL = "employment"  # the model_name of the repo's driftloop.yaml (the CLI test reads it)
A, B = "a" * 64, "b" * 64


# --------------------------------------------------------------------------- pure checks


@pytest.mark.parametrize(
    ("actual", "expected"),
    [
        ({"MLmodel": A, "model.skops": B}, []),
        ({"MLmodel": A}, ["model/model.skops was recorded at registration but is missing"]),
        (
            {"MLmodel": A, "model.skops": B, "model.pkl": A},
            ["model/model.pkl is in the artifact store but was not there at registration"],
        ),
        (
            {"MLmodel": B, "model.skops": B},
            ["model/MLmodel does not match the sha256 recorded at registration"],
        ),
    ],
)
def test_compare_names_every_missing_extra_and_changed_file(
    actual: dict[str, str], expected: list[str]
) -> None:
    problems = integrity.compare({"MLmodel": A, "model.skops": B}, actual, prefix="model/")
    assert len(problems) == len(expected)
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start), problem


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("{oops", "not valid JSON"),
        ('["x"]', "JSON object"),
        (json.dumps({"algorithm": "md5", "model": {"MLmodel": A}, "reference": A}), "algorithm"),
        (json.dumps({"algorithm": "sha256", "model": {"x": A}, "reference": A}), "MLmodel"),
        (
            json.dumps({"algorithm": "sha256", "model": {"MLmodel": A, "../x": A}, "reference": A}),
            "plain relative path",
        ),
        (json.dumps({"algorithm": "sha256", "model": {"MLmodel": "z"}, "reference": A}), "digest"),
        (json.dumps({"algorithm": "sha256", "model": {"MLmodel": A}}), "reference"),
    ],
)
def test_a_malformed_record_is_named(raw: str, needle: str) -> None:
    with pytest.raises(integrity.IntegrityProblem, match=needle):
        integrity.parse_record(raw)


def test_a_record_round_trips() -> None:
    record = integrity.IntegrityRecord(model={"model.skops": B, "MLmodel": A}, reference=A)
    assert integrity.parse_record(record.to_json()) == record


@pytest.mark.parametrize(
    ("sklearn", "needle"),
    [
        ({"serialization_format": "cloudpickle", "pickled_model": "model.pkl"}, "'cloudpickle'"),
        ({"serialization_format": "pickle", "pickled_model": "model.pkl"}, "never unpickles"),
        ({"pickled_model": "model.skops"}, "serialization_format None"),
        ({"serialization_format": "skops", "pickled_model": "other.skops"}, "not a recorded file"),
        (None, "no sklearn flavor"),
    ],
)
def test_only_a_recorded_skops_file_is_accepted(
    sklearn: dict[str, str] | None, needle: str
) -> None:
    flavors = {"python_function": {"loader_module": "mlflow.sklearn"}}
    if sklearn is not None:
        flavors["sklearn"] = sklearn
    text = yaml.safe_dump({"flavors": flavors})
    with pytest.raises(integrity.IntegrityProblem, match=needle):
        integrity.skops_model_file(text, {"MLmodel": A, "model.skops": B, "model.pkl": A})


def test_tree_digests_lists_symlinks_without_following_them(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "MLmodel")
    digests = integrity.tree_digests(tmp_path)
    assert digests["link"] == integrity.NOT_A_FILE
    assert digests["MLmodel"] == integrity.file_digest(tmp_path / "MLmodel")


def test_registration_refuses_a_pipeline_with_an_untrusted_type() -> None:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    pipeline = make_pipeline(FunctionTransformer(abs)).fit(np.ones((3, 1)))
    with pytest.raises(RuntimeError, match=r"does not trust: \['builtins.abs'\]"):
        registry.trusted_skops_types(pipeline)


# --------------------------------------------------------------------------- a real registry


def _pipeline(seed: int) -> tuple[Any, pd.DataFrame, pd.Series]:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {"AGEP": rng.normal(40, 10, 60), "SCHL": rng.choice(["16", "21"], 60).astype(object)}
    )
    y = pd.Series((X["AGEP"] > 40).astype(int))
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["AGEP"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["SCHL"]),
        ]
    )
    return Pipeline([("pre", pre), ("model", LogisticRegression())]).fit(X, y), X, y


def _register(client: Any, artifacts: Path, seed: int) -> int:
    """One more version, registered the way driftloop registers (registry.log_model_version)."""
    import mlflow
    from mlflow.models import infer_signature

    from pipelines.reference import build_reference

    experiment = registry.ensure_experiment(
        client, "integrity", artifact_location=artifacts.as_uri()
    )
    pipeline, X, y = _pipeline(seed)
    with registry.tracked(client.tracking_uri), mlflow.start_run(experiment_id=experiment):
        return registry.log_model_version(
            client,
            model_name=MODEL,
            pipeline=pipeline,
            reference=build_reference(pipeline, X, y, target="employed", task="classification"),
            signature=infer_signature(X.head(3), pipeline.predict(X.head(3))),
            input_example=X.head(3),
            tags=registry.model_spec_tag(
                task="classification", target="employed", numeric=["AGEP"], categorical=["SCHL"]
            ),
        )


@pytest.fixture
def client(mlflow_env: dict[str, str], tmp_path: Path) -> Any:
    """A registry in tmp_path with version 1 (of _pipeline(1)), its artifacts in tmp_path."""
    client = registry.make_client(mlflow_env["MLFLOW_TRACKING_URI"])
    _register(client, tmp_path / "mlruns", seed=1)
    return client


def _refusal(action: Any, *needles: str) -> str:
    with pytest.raises(registry.ModelIntegrityError) as err:
        action()
    message = str(err.value)
    for needle in needles:
        assert needle in message, message
    assert tempfile.gettempdir() not in message  # no local (temp) path, ever
    return message


def test_registration_records_the_stored_bytes(client: Any) -> None:
    mv = registry.get_version(client, MODEL, 1)
    record = integrity.parse_record(mv.tags[registry.INTEGRITY_TAG])
    stored = stored_model_dir(client, MODEL, 1)
    assert {"MLmodel", "model.skops"} <= set(record.model)
    assert record.model == integrity.tree_digests(stored)
    assert record.reference == integrity.file_digest(stored_reference(client, MODEL, 1))


def test_a_clean_version_loads_and_verifies(client: Any) -> None:
    pipeline, X, _ = _pipeline(1)
    loaded = registry.load_verified_model(client, MODEL, 1)
    np.testing.assert_array_equal(loaded.pipeline.predict_proba(X), pipeline.predict_proba(X))
    assert loaded.signature is not None and "AGEP" in loaded.signature["inputs"]
    assert len(registry.load_reference(client, MODEL, 1)) == len(X)
    registry.verify_version(client, MODEL, 1)


def test_the_metadata_file_mlflow_itself_writes_into_the_store_is_not_a_tamper(
    client: Any, mlflow_env: dict[str, str]
) -> None:
    import mlflow

    local = mlflow.artifacts.download_artifacts(  # no dst: MLflow writes into the local store
        f"models:/{MODEL}/1", tracking_uri=mlflow_env["MLFLOW_TRACKING_URI"]
    )
    stored = stored_model_dir(client, MODEL, 1)
    assert Path(local) == stored and (stored / "registered_model_meta").is_file()
    registry.verify_version(client, MODEL, 1)
    registry.load_model(client, MODEL, 1)


def test_a_coefficient_rewritten_with_skops_is_refused(client: Any) -> None:
    raise_a_coefficient(stored_model_dir(client, MODEL, 1))
    _refusal(
        lambda: registry.load_model(client, MODEL, 1),
        "version 1",
        "model/model.skops does not match the sha256 recorded at registration",
        "restore",
    )


@pytest.mark.parametrize(
    ("tamper", "needle"),
    [
        (lambda d: (d / "extra.py").write_text("print(1)"), "model/extra.py is in the artifact"),
        (lambda d: (d / "input_example.json").unlink(), "model/input_example.json was recorded"),
    ],
)
def test_an_added_or_removed_file_is_refused(client: Any, tamper: Any, needle: str) -> None:
    tamper(stored_model_dir(client, MODEL, 1))
    _refusal(lambda: registry.load_model(client, MODEL, 1), "version 1", needle)


def test_a_cloudpickle_mlmodel_is_refused_and_runs_nothing(client: Any, tmp_path: Path) -> None:
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(OpensMarker(control))).close()
    assert control.exists()  # the payload is live: unpickling it does create its marker
    marker = tmp_path / "pwned"
    swap_in_pickle(stored_model_dir(client, MODEL, 1), marker)
    _refusal(lambda: registry.load_model(client, MODEL, 1), "version 1", "model/MLmodel")
    _refusal(lambda: registry.verify_version(client, MODEL, 1), "model/model.pkl")
    assert not marker.exists()


def test_a_cloudpickle_mlmodel_is_refused_even_with_a_matching_record(
    client: Any, tmp_path: Path
) -> None:
    """An attacker who can also rewrite the tag still gets no unpickling: the format is checked."""
    marker = tmp_path / "pwned"
    stored = stored_model_dir(client, MODEL, 1)
    swap_in_pickle(stored, marker)
    forged = integrity.IntegrityRecord(
        model=integrity.tree_digests(stored),
        reference=integrity.file_digest(stored_reference(client, MODEL, 1)),
    )
    client.set_model_version_tag(MODEL, "1", registry.INTEGRITY_TAG, forged.to_json())
    _refusal(
        lambda: registry.load_model(client, MODEL, 1),
        "version 1",
        "model/MLmodel declares serialization_format 'cloudpickle'",
    )
    assert not marker.exists()


def test_a_tampered_reference_snapshot_is_refused(client: Any) -> None:
    rewrite_parquet(stored_reference(client, MODEL, 1))
    _refusal(
        lambda: registry.load_reference(client, MODEL, 1),
        "version 1",
        "reference/reference.parquet does not match",
    )
    _refusal(lambda: registry.verify_version(client, MODEL, 1), "reference/reference.parquet")
    registry.load_model(client, MODEL, 1)  # the model files themselves are intact


def test_a_version_without_a_record_is_refused_with_the_fix(client: Any) -> None:
    client.delete_model_version_tag(MODEL, "1", registry.INTEGRITY_TAG)
    for action in (registry.load_model, registry.load_reference, registry.verify_version):
        _refusal(
            lambda action=action: action(client, MODEL, 1),
            "version 1",
            "no integrity record",
            "driftloop train",
        )


runner = CliRunner()


def test_verify_exits_0_on_a_clean_registry_and_2_naming_the_tampered_version(
    client: Any, tmp_path: Path
) -> None:
    assert _register(client, tmp_path / "mlruns", seed=2) == 2
    config = str(REPO / "driftloop.yaml")
    clean = runner.invoke(app, ["verify", "--config", config])
    assert clean.exit_code == 0, clean.output
    assert clean.output.splitlines() == [f"{MODEL} v1: ok", f"{MODEL} v2: ok"]

    raise_a_coefficient(stored_model_dir(client, MODEL, 2))
    tampered = runner.invoke(app, ["verify", "--config", config])
    assert tampered.exit_code == 2, tampered.output
    lines = tampered.output.splitlines()
    assert lines[0] == f"{MODEL} v1: ok"
    assert lines[1].startswith(f"{MODEL} v2: FAILED model/model.skops does not match")
    assert lines[-1].startswith("error: 1 of 2 versions") and "(v2)" in lines[-1]
    assert "Traceback" not in tampered.output

    one = runner.invoke(app, ["verify", "--config", config, "--version", "1"])
    assert one.exit_code == 0 and one.output.splitlines() == [f"{MODEL} v1: ok"]
    missing = runner.invoke(app, ["verify", "--config", config, "--version", "9"])
    assert missing.exit_code == 2 and "no version 9" in missing.output
