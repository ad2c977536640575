"""USAGE (Peng et al., ICCV 2023): temperature-controlled CAM learning with a self-adaptive teacher/student."""
