"""Experiments: training configs (configs/*.py) and the reproduction runner (`convfirst reproduce`):
configs/reproduce/*.py -> run.py (cells in fresh processes, resumable) -> report.py (tables, plots)."""
