"""The morning review app (``defectflow serve``): last night's flagged frames, zoomable, and the operators' verdicts.

Server-rendered pages (FastAPI, Jinja2) and a little JavaScript, every asset served from this package (plants are
offline). It reads the workspace through ``storage/`` only and writes nothing but verdicts; it imports no torch,
Prefect, Dask or MLflow, so it starts in a second and runs on a machine without the training stack's weight.
"""
