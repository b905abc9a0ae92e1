"""The distro layer: SDK set-up, exporters, the embedded endpoint and the command-line applications.

The only code of otel_ml that imports the OpenTelemetry SDK or an exporter,
and the only code that may read their private names (each such read probed
once, with a public-API fallback). The instrumentation layer (every other
package of otel_ml) uses the OpenTelemetry API only; what the distro adds to
it is plugged in from here, never imported from there.
"""

from otel_ml.distro import _accelerate

_accelerate.install()
