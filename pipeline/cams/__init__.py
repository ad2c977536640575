"""CAM methods: train a classifier-like model on image labels, then extract class activation maps.

The package holds the contract every method fulfils (:mod:`pipeline.cams.contract`), the registry
(:mod:`pipeline.cams.registry`), the shared trainer (:mod:`pipeline.cams.train`), extraction
(:mod:`pipeline.cams.extract`), the CAM store (:mod:`pipeline.cams.store`) and one sub-package per paper under
``methods/`` with its params (torch-free) beside its model. This file imports nothing: stages that only read the
CAM store do not depend on the methods.
"""
