//! Traces: the real daemon, pointed at an OTLP trace receiver started here
//! (loopback, port 0) through the standard `OTEL_*` variables, exports the
//! spans of one message: the gRPC call (continuing the caller's W3C trace),
//! the message with chat, bot, attempt and outcome, and the Bot API attempt.

mod common;

use std::time::Duration;

use common::{BOTS, Gateway, secret, text_request};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use shardgate_mock::MockConfig;
use tokio::sync::mpsc;
use tokio_stream::wrappers::TcpListenerStream;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

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

fn attr(span: &Span, key: &str) -> Option<String> {
    let kv: &KeyValue = span.attributes.iter().find(|kv| kv.key == key)?;
    match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_is_one_trace_continuing_the_callers() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let otlp = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Sink(tx)))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
    ];
    let gw = Gateway::start_with_env(MockConfig::default(), &BOTS, "", &env).await;
    let mut req = tonic::Request::new(text_request(777, 777, "traced", "t1"));
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{CALLER_TRACE}-00f067aa0ba902b7-01")
            .parse()
            .expect("header"),
    );
    let sent = gw
        .client()
        .await
        .send(req)
        .await
        .expect("send")
        .into_inner();

    let mut spans: Vec<(String, Span)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !(spans.iter().any(|(_, s)| s.name == "message")
        && spans.iter().any(|(_, s)| s.name == "telegram.send")
        && spans.iter().any(|(_, s)| s.name == "grpc.send"))
    {
        let Ok(Some(batch)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            panic!(
                "spans missing; got {:?}",
                spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
            );
        };
        for rs in batch.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| v.value.as_ref())
                .map(|v| format!("{v:?}"))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                spans.extend(ss.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
    }
    let find = |name: &str| spans.iter().find(|(_, s)| s.name == name).expect(name);
    let (service, message) = find("message");
    assert!(service.contains("shardgate"), "service.name: {service}");
    assert_eq!(
        hex(&message.trace_id),
        CALLER_TRACE,
        "the caller's trace continues"
    );
    assert_eq!(attr(message, "chat_id").as_deref(), Some("777"));
    assert_eq!(attr(message, "bot").as_deref(), Some(sent.bot.as_str()));
    assert_eq!(attr(message, "attempt").as_deref(), Some("1"));
    assert_eq!(attr(message, "outcome").as_deref(), Some("delivered"));
    let (_, attempt) = find("telegram.send");
    assert_eq!(attempt.trace_id, message.trace_id);
    assert_eq!(
        attempt.parent_span_id, message.span_id,
        "the Bot API attempt is a child of the message"
    );
    let (_, call) = find("grpc.send");
    assert_eq!(
        message.parent_span_id, call.span_id,
        "the message is a child of the gRPC call"
    );
    let dump = format!("{spans:?}");
    for b in BOTS {
        assert!(!dump.contains(&secret(b.id)), "token in spans");
    }
    eprintln!(
        "span tree of one message: grpc.send > message{{chat_id=777, bot={}, attempt=1, outcome=delivered}} > telegram.send ({} spans received)",
        sent.bot,
        spans.len()
    );
}
