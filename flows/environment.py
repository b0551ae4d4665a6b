"""Process-wide defaults for Prefect, MLflow and Dask, set before any of them reads its settings.

Prefect reads its settings once, when it is first imported: a default set after that has no effect. This module
is imported by ``flows/__init__.py``, which Python runs before any ``flows`` module (the command line, the
deployments' entry points, the tests' imports), so it is in place before anything imports Prefect.
"""

from __future__ import annotations

import os

import dask.config
import distributed.config  # noqa: F401  (registers Dask's own defaults first: ours below must come after them)

# No telemetry from an offline plant network.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# A busy machine, or two commands starting their temporary API servers at once, can take longer than Prefect's
# default of 20 s to start the server.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
# Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536. Setting it turns off glibc's adaptive mmap
# threshold, so every array over 128 KiB is a fresh mmap whose pages fault in on first touch: scoring a
# 2048x1536 frame spent half its time in the kernel (3.2 against 6.9 frames/s per worker; docs/scoring.md). Our
# default drops the variable; a value the user configures for Dask still wins (update_defaults keeps it). It must
# follow distributed's own defaults: registered later, those would replace ours ("new-defaults" priority).
dask.config.update_defaults({"distributed": {"nanny": {"pre-spawn-environ": {"MALLOC_TRIM_THRESHOLD_": None}}}})
