"""defectflow tasks."""
