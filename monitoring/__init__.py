"""Drift and quality checks, the inference log store, alert and retrain policies, dashboards.

No Prefect imports here.
"""
