"""defectflow storage: workspace settings, the zarr frame store, result tables and MLflow tracking.

No network code lives here: everything talks to local paths or to the tracking URI the settings name.
"""
