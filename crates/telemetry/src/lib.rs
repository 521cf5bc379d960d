//! Logs and traces for Shardgate.
//!
//! [`init`] installs the process's tracing subscriber:
//! - log lines on stderr, text or JSON, filtered by `RUST_LOG` (or the
//!   configured default level), every line passed through
//!   [`shardgate_telegram::redact_tokens`] on its way out (dependencies log
//!   Bot API URLs, which contain the token, at debug and trace);
//! - when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
//!   is set, an OpenTelemetry layer exporting spans over OTLP/gRPC (tonic)
//!   with a batch processor, `service.name` from `OTEL_SERVICE_NAME`, else the
//!   configured name, else `shardgate`. String attributes, event names and
//!   status messages are redacted before export too. Without the variables
//!   there is no OpenTelemetry layer at all.
//!
//! The other standard variables apply as the OTLP exporter reads them
//! (`OTEL_EXPORTER_OTLP_HEADERS`, `..._TIMEOUT`, `..._COMPRESSION`,
//! `OTEL_RESOURCE_ATTRIBUTES`, the `OTEL_BSP_*` batch settings), and
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn export off.
//!
//! [`install_panic_hook`] replaces the default panic hook with one that
//! redacts bot tokens and caller keys from the panic's message.
//!
//! [`set_parent_from_metadata`] and [`inject_into_metadata`] carry W3C trace
//! context (`traceparent`, `tracestate`) in and out of tonic metadata.

mod panic;
mod propagation;
mod redact;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use panic::{install_panic_hook, panic_report, redact_secrets};
pub use propagation::{
    extract_context, inject_into_metadata, set_parent_from_metadata, set_parent_from_traceparent,
    traceparent,
};
pub use redact::{Redacting, RedactingProcessor, RedactingWriter};

/// The `service.name` used when neither `OTEL_SERVICE_NAME` nor the
/// configuration names one.
pub const DEFAULT_SERVICE_NAME: &str = "shardgate";

/// Log line format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (with the current span's fields).
    Json,
}

/// What [`init`] sets up.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    pub format: LogFormat,
    /// Filter directives used when `RUST_LOG` is unset or invalid (`info`,
    /// `warn`, `shardgate=debug,info`, ...).
    pub default_level: String,
    /// `service.name` when `OTEL_SERVICE_NAME` is unset; `None` = `shardgate`.
    pub service_name: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            format: LogFormat::Text,
            default_level: "info".to_owned(),
            service_name: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// Another global subscriber was installed first.
    #[error("logging not initialised: {0}")]
    AlreadyInitialised(String),
    /// The OTLP exporter could not be built (bad endpoint, ...).
    #[error("OpenTelemetry exporter: {0}")]
    Exporter(String),
    #[error("flushing spans: {0}")]
    Flush(String),
}

/// Keeps trace export running; dropping it (or [`shutdown`](Self::shutdown))
/// flushes the spans still buffered and stops the exporter. Keep it alive in
/// `main` until the end.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    otel: Option<Otel>,
}

struct Otel {
    provider: SdkTracerProvider,
    /// The exporter's own runtime: its tonic channel runs there, so flushing
    /// never depends on (or blocks) the application's runtime.
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("otel", &self.otel.is_some())
            .finish()
    }
}

/// True once [`init`] installed an OpenTelemetry layer (and until its guard
/// shut down): the propagation helpers do nothing otherwise.
static OTEL_ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are being exported.
pub fn otel_enabled() -> bool {
    OTEL_ENABLED.load(Ordering::Relaxed)
}

impl TelemetryGuard {
    /// Whether spans are exported.
    pub fn otel_enabled(&self) -> bool {
        self.otel.is_some()
    }

    /// Exports the spans buffered so far (blocks the calling thread, up to
    /// the exporter's timeout). From async code, call it through
    /// `spawn_blocking`.
    pub fn flush(&self) -> Result<(), TelemetryError> {
        match &self.otel {
            Some(o) => o
                .provider
                .force_flush()
                .map_err(|e| TelemetryError::Flush(e.to_string())),
            None => Ok(()),
        }
    }

    /// Flushes and stops the exporter (blocks, like [`flush`](Self::flush)).
    pub fn shutdown(mut self) -> Result<(), TelemetryError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), TelemetryError> {
        let Some(o) = self.otel.take() else {
            return Ok(());
        };
        OTEL_ENABLED.store(false, Ordering::Relaxed);
        let result = o
            .provider
            .shutdown_with_timeout(Duration::from_secs(10))
            .map_err(|e| TelemetryError::Flush(e.to_string()));
        o.runtime.shutdown_background();
        result
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("shardgate: {e}");
        }
    }
}

/// Is trace export asked for by the environment?
pub fn otel_requested() -> bool {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED")
        .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER")
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("none"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The `service.name` spans are exported under.
pub fn service_name(configured: Option<&str>) -> String {
    std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| configured.map(str::to_owned))
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned())
}

/// Targets whose spans never go to the OpenTelemetry layer: the exporter's
/// own transport would otherwise trace itself.
fn exported_target(target: &str) -> bool {
    const OWN: [&str; 6] = ["opentelemetry", "tonic", "h2", "hyper", "tower", "reqwest"];
    !OWN.iter().any(|p| {
        target.strip_prefix(p).is_some_and(|rest| {
            rest.is_empty()
                || rest.starts_with("::")
                || rest.starts_with('_')
                || rest.starts_with('-')
        })
    })
}

fn build_otel(cfg: &TelemetryConfig) -> Result<Otel, TelemetryError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otel-export")
        .enable_all()
        .build()
        .map_err(|e| TelemetryError::Exporter(format!("starting the exporter's runtime: {e}")))?;
    // The tonic channel spawns its worker on the runtime current at build.
    let exporter = {
        let _rt = runtime.enter();
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?
    };
    let resource = Resource::builder()
        .with_service_name(service_name(cfg.service_name.as_deref()))
        .build();
    let batch = BatchSpanProcessor::builder(exporter).build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(RedactingProcessor::new(batch))
        .with_resource(resource)
        .build();
    Ok(Otel { provider, runtime })
}

/// Installs the global subscriber (see the crate docs). `RUST_LOG` wins over
/// `cfg.default_level`. An exporter that cannot be built is reported on
/// stderr and leaves logging on without traces; the only error is a
/// subscriber already installed.
pub fn init(cfg: TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.default_level));
    let writer = Redacting::stderr();
    let fmt_layer = match cfg.format {
        // Colours only on a terminal (and not with NO_COLOR): CI logs and
        // files stay plain text.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("NO_COLOR").is_none(),
            )
            .with_writer(writer)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
    };
    let otel = if otel_requested() {
        match build_otel(&cfg) {
            Ok(o) => Some(o),
            Err(e) => {
                eprintln!(
                    "shardgate: traces not exported: {}",
                    shardgate_telegram::redact_tokens(&e.to_string())
                );
                None
            }
        }
    } else {
        None
    };
    let registry = tracing_subscriber::registry().with(filter).with(fmt_layer);
    let result = match &otel {
        Some(o) => {
            let tracer = o.provider.tracer("shardgate");
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(filter_fn(|meta| exported_target(meta.target())));
            registry.with(layer).try_init()
        }
        None => registry.try_init(),
    };
    if let Err(e) = result {
        if let Some(o) = otel {
            let _ = o.provider.shutdown();
            o.runtime.shutdown_background();
        }
        return Err(TelemetryError::AlreadyInitialised(e.to_string()));
    }
    if otel.is_some() {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        OTEL_ENABLED.store(true, Ordering::Relaxed);
    }
    Ok(TelemetryGuard { otel })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_transport_targets_are_not_exported() {
        assert!(exported_target("shardgate_gateway::dispatcher"));
        assert!(exported_target("shardgate"));
        assert!(exported_target("hyperion"));
        assert!(exported_target("towering"));
        assert!(!exported_target("h2::codec"));
        assert!(!exported_target("hyper_util::client"));
        assert!(!exported_target("hyper"));
        assert!(!exported_target("tonic::transport"));
        assert!(!exported_target("tower::buffer"));
        assert!(!exported_target("opentelemetry_sdk"));
        assert!(!exported_target("opentelemetry-otlp"));
        assert!(!exported_target("reqwest::connect"));
    }

    #[test]
    fn service_name_precedence() {
        // Reads the environment only; nothing in this binary writes it.
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            assert_eq!(service_name(None), "shardgate");
            assert_eq!(service_name(Some("x")), "x");
        }
    }

    #[test]
    fn default_config() {
        let c = TelemetryConfig::default();
        assert_eq!(c.format, LogFormat::Text);
        assert_eq!(c.default_level, "info");
        assert!(c.service_name.is_none());
    }
}
