//! End to end: `init` with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at an OTLP
//! trace receiver started here (loopback, port 0) exports our spans with the
//! right attributes and `service.name`, continues a caller's W3C trace, and
//! never exports a token.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use shardgate_telemetry::{LogFormat, TelemetryConfig};
use tokio::sync::mpsc;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::metadata::MetadataMap;

const TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ";
const SECRET: &str = "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ";
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

struct Sink(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.0.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn text(v: &Option<AnyValue>) -> Option<String> {
    match v.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| text(&kv.value))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn spans_reach_an_otlp_receiver() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let addr = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(Sink(tx)))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        addr
    });
    // SAFETY: the only test in this binary, before any thread reads the
    // environment (the receiver's runtime does not).
    unsafe {
        std::env::remove_var("OTEL_SERVICE_NAME");
        std::env::remove_var("OTEL_SDK_DISABLED");
        std::env::remove_var("OTEL_TRACES_EXPORTER");
        std::env::remove_var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"));
        std::env::set_var("RUST_LOG", "info");
    }

    let guard = shardgate_telemetry::init(TelemetryConfig {
        format: LogFormat::Json,
        default_level: "info".into(),
        service_name: None,
    })
    .expect("first init");
    assert!(guard.otel_enabled());
    assert!(shardgate_telemetry::otel_enabled());
    // A second init reports the installed subscriber, without panicking.
    assert!(shardgate_telemetry::init(TelemetryConfig::default()).is_err());

    // A caller's trace context arrives in gRPC metadata.
    let mut incoming = MetadataMap::new();
    incoming.insert(
        "traceparent",
        format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")
            .parse()
            .unwrap(),
    );
    let mut outgoing = MetadataMap::new();
    {
        let message = tracing::info_span!(
            "message",
            seq = 7u64,
            chat_id = -100123i64,
            bot = tracing::field::Empty,
            attempt = tracing::field::Empty
        );
        shardgate_telemetry::set_parent_from_metadata(&message, &incoming);
        message.record("bot", "alpha");
        message.record("attempt", 1u32);
        let _m = message.enter();
        {
            let request = tracing::info_span!("telegram.request", outcome = "delivered");
            let _r = request.enter();
            // Never done by our code; a dependency might.
            tracing::info!(url = %format!("https://api.telegram.org/bot{TOKEN}/sendMessage"), "request with {TOKEN}");
            shardgate_telemetry::inject_into_metadata(&request, &mut outgoing);
            // The same value as a string, for per-message propagation.
            let tp = shardgate_telemetry::traceparent(&request).expect("traceparent");
            assert_eq!(outgoing.get("traceparent").unwrap().to_str().unwrap(), tp);
        }
        // A forwarded message continues the trace from a bare traceparent.
        let remote = tracing::info_span!("forwarded");
        shardgate_telemetry::set_parent_from_traceparent(
            &remote,
            &format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"),
        );
        drop(remote);
        let leaky = tracing::info_span!("leaky", url = %format!("https://x/bot{TOKEN}/getMe"));
        drop(leaky);
    }
    // Forwarding carries the same trace.
    let tp = outgoing
        .get("traceparent")
        .expect("traceparent injected")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(tp.starts_with(&format!("00-{CALLER_TRACE}-")), "{tp}");

    // Flush from a blocking thread (the exporter's own runtime does the I/O).
    let guard = rt.block_on(async {
        tokio::task::spawn_blocking(move || {
            guard.flush().expect("flush");
            guard
        })
        .await
        .unwrap()
    });

    let mut spans: Vec<Span> = Vec::new();
    let mut service_names = Vec::new();
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while spans.len() < 4 {
            let req = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .expect("spans exported within 20 s")
                .expect("receiver open");
            for rs in req.resource_spans {
                if let Some(res) = &rs.resource {
                    service_names.push(attr(&res.attributes, "service.name"));
                }
                for ss in rs.scope_spans {
                    spans.extend(ss.spans);
                }
            }
        }
    });
    let dump = format!("{spans:?}");
    assert!(!dump.contains(SECRET), "token exported: {dump}");
    assert!(dump.contains("123456789:***"), "{dump}");
    assert!(
        service_names
            .iter()
            .all(|s| s.as_deref() == Some("shardgate")),
        "{service_names:?}"
    );

    let by_name = |n: &str| {
        spans
            .iter()
            .find(|s| s.name == n)
            .unwrap_or_else(|| panic!("no span {n} in {dump}"))
    };
    let message = by_name("message");
    assert_eq!(
        attr(&message.attributes, "chat_id").as_deref(),
        Some("-100123")
    );
    assert_eq!(attr(&message.attributes, "bot").as_deref(), Some("alpha"));
    assert_eq!(attr(&message.attributes, "attempt").as_deref(), Some("1"));
    assert_eq!(attr(&message.attributes, "seq").as_deref(), Some("7"));
    assert_eq!(hex(&message.trace_id), CALLER_TRACE);
    assert_eq!(hex(&message.parent_span_id), CALLER_SPAN);

    let request = by_name("telegram.request");
    assert_eq!(request.trace_id, message.trace_id);
    assert_eq!(request.parent_span_id, message.span_id);
    assert_eq!(
        attr(&request.attributes, "outcome").as_deref(),
        Some("delivered")
    );
    assert!(
        tp.contains(&hex(&request.span_id)),
        "{tp} is not the request span"
    );
    let event = request
        .events
        .first()
        .expect("the log event as a span event");
    assert!(event.name.contains("123456789:***"), "{event:?}");

    let forwarded = by_name("forwarded");
    assert_eq!(hex(&forwarded.trace_id), CALLER_TRACE);
    assert_eq!(hex(&forwarded.parent_span_id), CALLER_SPAN);

    let leaky = by_name("leaky");
    assert_eq!(
        attr(&leaky.attributes, "url").as_deref(),
        Some("https://x/bot123456789:***/getMe")
    );

    rt.block_on(async {
        tokio::task::spawn_blocking(move || guard.shutdown().expect("shutdown"))
            .await
            .unwrap()
    });
    assert!(!shardgate_telemetry::otel_enabled());
}
