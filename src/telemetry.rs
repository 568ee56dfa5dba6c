//! Logs and traces.
//!
//! Logs go to stderr, as text or JSON, filtered by `--log-filter`. When
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans are also exported over OTLP/gRPC
//! (the standard `OTEL_*` variables apply; the service is `inflow-<role>` unless
//! `OTEL_SERVICE_NAME` says otherwise). A write's trace continues from router to
//! ingester: the router puts the W3C `traceparent` of its span into the
//! `WriteBatch` message that travels with the batch, and the ingester's span
//! takes it as its parent.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::prelude::*;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The logging flags of `inflow serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    #[arg(
        long = "log-format",
        env = "INFLOW_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub format: LogFormat,
    /// tracing filter, e.g. `info,inflow=debug`.
    #[arg(
        long = "log-filter",
        id = "log_filter",
        env = "INFLOW_LOG_FILTER",
        default_value = "info"
    )]
    pub filter: String,
}

const TRACEPARENT: &str = "traceparent";

/// Keeps the span exporter alive; [`Telemetry::shutdown`] flushes it.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still queued. Call it outside async code: the
    /// exporter's own thread waits on the runtime.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            eprintln!("inflow: flushing traces: {e}");
        }
    }
}

/// Installs the global subscriber. Must run inside the Tokio runtime (the
/// OTLP exporter's gRPC channel lives on it).
pub fn init(format: LogFormat, filter: &str, service: &str) -> Telemetry {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs.boxed(),
        LogFormat::Json => logs.json().boxed(),
    };
    let provider = otlp_provider(service);
    // Traces are our own spans at info and above, whatever the log filter.
    let traces = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("inflow"))
            .with_filter(Targets::new().with_target("inflow", LevelFilter::INFO))
    });
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces)
        .init();
    Telemetry { provider }
}

fn otlp_provider(service: &str) -> Option<SdkTracerProvider> {
    std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT")?;
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("inflow: OTLP exporter not started, traces are off: {e}");
            return None;
        }
    };
    let resource = match std::env::var_os("OTEL_SERVICE_NAME") {
        Some(_) => Resource::builder().build(),
        None => Resource::builder()
            .with_service_name(service.to_owned())
            .build(),
    };
    Some(
        SdkTracerProvider::builder()
            .with_resource(resource)
            .with_batch_exporter(exporter)
            .build(),
    )
}

/// The W3C `traceparent` of the current span; empty when traces are off.
pub fn traceparent() -> String {
    let mut carrier = HashMap::new();
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove(TRACEPARENT).unwrap_or_default()
}

/// Makes `span` a child of the span a `traceparent` names (a router's).
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    if traceparent.is_empty() {
        return;
    }
    let carrier = HashMap::from([(TRACEPARENT.to_string(), traceparent.to_string())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(cx);
}
