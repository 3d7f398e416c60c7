"""The feature spec: which columns a model takes, in order, and the columns every prediction adds.
Imports nothing of ours: training, serving, monitoring and the registry all read it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Column holding the model's prediction in reference snapshots and inference logs.
PREDICTION_COLUMN = "prediction"
#: Column holding the predicted probability (positive class, or the top class for multiclass).
PROBABILITY_COLUMN = "probability"


@dataclass(frozen=True)
class FeatureSpec:
    """The model's feature columns, numeric first, in the order the model receives them."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in ("numeric", "categorical"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise TypeError(
                    f"FeatureSpec.{name} must be a sequence of column names, not a string"
                )
            object.__setattr__(self, name, tuple(str(c) for c in value))
        seen: set[str] = set()
        repeated = sorted({c for c in self.columns if c in seen or seen.add(c)})  # type: ignore[func-returns-value]
        if repeated:
            raise ValueError(
                f"feature columns listed more than once (or as both kinds): {repeated}"
            )

    @property
    def columns(self) -> tuple[str, ...]:
        """All feature columns: numeric then categorical."""
        return self.numeric + self.categorical

    def to_dict(self) -> dict[str, list[str]]:
        """A JSON-able form."""
        return {"numeric": list(self.numeric), "categorical": list(self.categorical)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[str]]) -> FeatureSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            numeric=tuple(data.get("numeric", ())), categorical=tuple(data.get("categorical", ()))
        )


#: Model families and the tasks each can be trained for (each family is one scikit-learn Pipeline,
#: built in :mod:`pipelines.training`; a test keeps the two in step).
FAMILY_TASKS: dict[str, tuple[str, ...]] = {
    "logistic": ("classification",),
    "linear": ("regression",),
    "random_forest": ("classification", "regression"),
    "hist_gradient_boosting": ("classification", "regression"),
}


def families_for(task: str) -> list[str]:
    """The model families that can be trained for a task."""
    return [family for family, tasks in FAMILY_TASKS.items() if task in tasks]


@dataclass(frozen=True)
class VersionInfo:
    """What driftloop recorded on a model version (its tags): task, target, features, classes.
    Read from MLflow by :func:`registry.version_info`."""

    model_name: str
    version: int
    run_id: str
    task: str
    target: str
    spec: FeatureSpec
    not_null: tuple[str, ...]
    classes: tuple[Any, ...]
