"""Evaluation metrics for segmentation and anomaly detection."""
