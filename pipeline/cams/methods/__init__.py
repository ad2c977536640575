"""One sub-package per CAM method: ``params.py`` (pydantic, torch-free) beside ``model.py`` (the method)."""
