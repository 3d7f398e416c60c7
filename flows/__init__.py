"""Prefect flows and tasks: the thin wiring that does I/O and calls pipelines/ and monitoring/."""
