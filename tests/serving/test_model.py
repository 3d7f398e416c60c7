"""The served model read through the one MLflow adapter (`registry`): its feature spec,
and load failures in the registry's error family with the messages users see."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from core.spec import FeatureSpec
from registry import SPEC_TAG, ModelNotFoundError
from serving.model import ModelLoadError, load_alias, load_version
from tests.serving.conftest import CATEGORICAL, MODEL, NUMERIC, Registry


def test_the_spec_of_a_loaded_version_is_its_feature_spec(
    tracking_uri: str, registry_template: Registry
) -> None:
    client = MlflowClient(tracking_uri=tracking_uri)
    model = load_version(client, MODEL, registry_template.versions["logistic"])
    assert model.spec == FeatureSpec(numeric=tuple(NUMERIC), categorical=tuple(CATEGORICAL))
    assert model.spec.columns == model.features


def test_an_unknown_version_is_a_model_not_found_error_naming_it(tracking_uri: str) -> None:
    with pytest.raises(ModelNotFoundError, match=r"model 'employment' has no version 99"):
        load_version(MlflowClient(tracking_uri=tracking_uri), MODEL, 99)


def test_a_version_without_the_driftloop_tag_is_refused_with_the_fix(
    tracking_uri: str, registry_template: Registry
) -> None:
    client = MlflowClient(tracking_uri=tracking_uri)
    version = registry_template.versions["forest"]
    client.delete_model_version_tag(MODEL, str(version), SPEC_TAG)
    with pytest.raises(ModelLoadError) as caught:
        load_version(client, MODEL, version)
    assert isinstance(caught.value, ModelNotFoundError)  # one family: the CLI prints one line
    assert str(caught.value) == (
        f"model 'employment' version {version} was not registered by driftloop "
        f"(tag problem: '{SPEC_TAG}'); register it with `driftloop train`"
    )


def test_a_missing_alias_is_refused_with_the_fix(tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri=tracking_uri)
    client.delete_registered_model_alias(MODEL, "champion")
    with pytest.raises(ModelLoadError, match=r"has no `champion` alias in the registry"):
        load_alias(client, MODEL)
