"""defectflow flows: Prefect flows that compose tasks, and the ``defectflow`` command line."""
