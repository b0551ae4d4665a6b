"""defectflow storage."""
