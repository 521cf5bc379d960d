//! Without the OTLP variables `init` installs logging only: no exporter, no
//! OpenTelemetry layer, and the propagation helpers do nothing.

use shardgate_telemetry::{LogFormat, TelemetryConfig};
use tonic::metadata::MetadataMap;

#[test]
fn no_endpoint_no_exporter() {
    // SAFETY: the only test in this binary, before any other thread starts.
    unsafe {
        std::env::remove_var("OTEL_EXPORTER_OTLP_ENDPOINT");
        std::env::remove_var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    }
    assert!(!shardgate_telemetry::otel_requested());
    let guard = shardgate_telemetry::init(TelemetryConfig {
        format: LogFormat::Text,
        default_level: "warn".into(),
        service_name: Some("ignored".into()),
    })
    .expect("init");
    assert!(!guard.otel_enabled());
    assert!(!shardgate_telemetry::otel_enabled());
    tracing::warn!("logging works");

    let span = tracing::info_span!("message");
    let mut md = MetadataMap::new();
    shardgate_telemetry::inject_into_metadata(&span, &mut md);
    assert!(md.is_empty());
    md.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    shardgate_telemetry::set_parent_from_metadata(&span, &md);
    guard.flush().unwrap();
    guard.shutdown().unwrap();
}
