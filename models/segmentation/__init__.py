"""Stage 1: the AMAM U-Net segmentation model (method paper, section 3.1)."""
