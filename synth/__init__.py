"""defectflow synth."""
