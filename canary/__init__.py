"""canary: progressive delivery for ML models with anytime-valid analysis."""

__version__ = "0.1.0"
