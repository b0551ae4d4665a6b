"""Process-wide defaults for Prefect and MLflow, set before either reads its settings.

Prefect reads its settings once, when it is first imported: a default set after that has no effect. This module
is imported by ``flows/__init__.py``, which Python runs before any ``flows`` module (the command line, the
deployments' entry points, the tests' imports), so it is in place before anything imports Prefect.
"""

from __future__ import annotations

import os

# No telemetry from an offline plant network.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# A busy machine, or two commands starting their temporary API servers at once, can take longer than Prefect's
# default of 20 s to start the server.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
