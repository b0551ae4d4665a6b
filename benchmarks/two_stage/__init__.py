"""The two-stage vs one-stage benchmark (entry point: ``python -m benchmarks.two_stage_vs_one_stage``).

Modules: :mod:`.options` (command line, constants, work folder), :mod:`.data` (synthetic sets), :mod:`.runs`
(training, ingest and scoring through the real commands and flows), :mod:`.evaluation` (image and pixel metrics),
:mod:`.report` (table, text and JSON).
"""

import os

# Idle OpenMP threads must not spin on a shared machine (docs/segmenter.md); set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
