//! OpenTelemetry traces over OTLP/HTTP (being built).
