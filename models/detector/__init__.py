"""Stage 2: the reverse-distillation detector (method paper, section 3.2)."""
