"""Real-time streaming tracker service for cine-MRI and surgical video."""

__version__ = "0.1.0"
