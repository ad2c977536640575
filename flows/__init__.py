"""Prefect flows: the whole DVC DAG as one flow (each stage is also a flow of its own, see stages/)."""
