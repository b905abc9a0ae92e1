"""The instrumentation layer's shared core: OpenTelemetry API only, no SDK."""
