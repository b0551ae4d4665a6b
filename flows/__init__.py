"""defectflow flows: Prefect flows that compose tasks, and the ``defectflow`` command line."""

import flows.environment  # noqa: F401  (defaults that must be set before Prefect is imported)
