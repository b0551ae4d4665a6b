"""defectflow models: pure PyTorch networks, losses, anomaly maps, metrics and training loops.

Nothing in this package imports Prefect, Dask, zarr or MLflow, so it can be read, tested and reused alone.
"""
