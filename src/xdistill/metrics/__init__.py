"""Metrics as pure functions of predictions and references (no models, no files): one module per task."""
