"""The version of otel_ml, kept in one place for packaging and telemetry scopes."""

__version__ = "0.1.0"
