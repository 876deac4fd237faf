"""xdistill: cross-lingual knowledge distillation into small, fast students."""

__version__ = "0.1.0"
