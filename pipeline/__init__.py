"""WSSS pipeline library: data, methods, caches and evaluation, importable without DVC or Prefect."""
