//! W3C trace context (`traceparent`, `tracestate`) in tonic metadata.
//!
//! Both helpers return at once when no OpenTelemetry layer is installed
//! (see [`crate::otel_enabled`]), so callers can use them unconditionally.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::metadata::{KeyRef, MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct MetadataExtractor<'a>(&'a MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                KeyRef::Ascii(k) => Some(k.as_str()),
                KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// The remote parent carried by `md` (an empty context when there is none or
/// it is malformed).
pub fn extract_context(md: &MetadataMap) -> Context {
    TraceContextPropagator::new().extract(&MetadataExtractor(md))
}

/// Makes the caller's trace (W3C `traceparent` in `md`) the parent of
/// `span`, so the gateway's spans continue it. Call before the span is
/// entered for the first time. No-op without trace export or without a valid
/// `traceparent`.
pub fn set_parent_from_metadata(span: &tracing::Span, md: &tonic::metadata::MetadataMap) {
    if !crate::otel_enabled() || md.get("traceparent").is_none() {
        return;
    }
    let cx = extract_context(md);
    if opentelemetry::trace::TraceContextExt::has_active_span(&cx) {
        // Fails only when the span is disabled or already started: then
        // there is nothing to continue.
        let _ = span.set_parent(cx);
    }
}

/// Writes `span`'s trace context into outgoing metadata (`traceparent` and
/// `tracestate`), e.g. on the stream that forwards messages to a peer. No-op
/// without trace export.
pub fn inject_into_metadata(span: &tracing::Span, md: &mut tonic::metadata::MetadataMap) {
    if !crate::otel_enabled() {
        return;
    }
    let cx = span.context();
    TraceContextPropagator::new().inject_context(&cx, &mut MetadataInjector(md));
}

/// `span`'s W3C `traceparent` (`00-<trace>-<span>-<flags>`), to carry trace
/// context per message where metadata is per stream (e.g. a field of each
/// request on a long-lived forwarding stream). `None` without trace export or
/// when the span is not sampled into a trace.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    if !crate::otel_enabled() {
        return None;
    }
    let cx = span.context();
    let mut carrier = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// [`set_parent_from_metadata`] for a bare `traceparent` string (see
/// [`traceparent`]). No-op without trace export or for an invalid value.
pub fn set_parent_from_traceparent(span: &tracing::Span, traceparent: &str) {
    if !crate::otel_enabled() || traceparent.is_empty() {
        return;
    }
    let carrier =
        std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    if opentelemetry::trace::TraceContextExt::has_active_span(&cx) {
        let _ = span.set_parent(cx);
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };

    use super::*;

    #[test]
    fn round_trips_through_metadata() {
        let sc = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cx = Context::new().with_remote_span_context(sc.clone());
        let mut md = MetadataMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut MetadataInjector(&mut md));
        assert_eq!(
            md.get("traceparent").unwrap().to_str().unwrap(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        let back = extract_context(&md);
        assert_eq!(back.span().span_context().trace_id(), sc.trace_id());
        assert_eq!(back.span().span_context().span_id(), sc.span_id());
        assert!(back.span().span_context().is_remote());
    }

    #[test]
    fn garbage_is_ignored() {
        let mut md = MetadataMap::new();
        md.insert("traceparent", "nonsense".parse().unwrap());
        assert!(!extract_context(&md).has_active_span());
        // And without export, the helpers do nothing (and do not panic).
        let span = tracing::Span::none();
        set_parent_from_metadata(&span, &md);
        inject_into_metadata(&span, &mut md);
        set_parent_from_traceparent(&span, "garbage");
        assert_eq!(traceparent(&span), None);
        assert_eq!(md.get("traceparent").unwrap(), "nonsense");
    }
}
