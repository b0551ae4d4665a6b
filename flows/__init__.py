"""defectflow flows."""
