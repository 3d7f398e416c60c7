"""Pure model logic: validation, features, training, evaluation and decisions.

Only pandas, numpy and scikit-learn here: no Prefect, MLflow, SQLAlchemy, environment reads,
or file and network I/O. (In Kedro or ZenML a "pipeline" is the wiring; in driftloop the wiring
is `flows/`, and `pipelines/` holds scikit-learn Pipelines and the pure steps that build and
judge them.)
"""
