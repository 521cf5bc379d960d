//! Token redaction on both ways out: log lines and exported spans.
//!
//! Our own code never records a token; these are defence in depth for
//! dependencies (HTTP client crates log full URLs at debug and trace, and a
//! Bot API URL contains the token).

use std::borrow::Cow;
use std::io::{self, Write};
use std::time::Duration;

use opentelemetry::trace::Status;
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use shardgate_telegram::redact_tokens;
use tracing_subscriber::fmt::MakeWriter;

/// A [`MakeWriter`] whose writers replace anything shaped like a bot token
/// with `id:***` before passing the bytes on. tracing-subscriber's fmt layer
/// writes one whole line per `write`, so a token never straddles two calls.
#[derive(Clone, Copy, Debug, Default)]
pub struct Redacting<M> {
    inner: M,
}

impl<M> Redacting<M> {
    pub fn new(inner: M) -> Self {
        Redacting { inner }
    }
}

impl Redacting<fn() -> io::Stderr> {
    /// Redacting stderr: what [`crate::init`] logs to.
    pub fn stderr() -> Self {
        Redacting { inner: io::stderr }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter {
            inner: self.inner.make_writer(),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactingWriter {
            inner: self.inner.make_writer_for(meta),
        }
    }
}

/// See [`Redacting`].
#[derive(Debug)]
pub struct RedactingWriter<W> {
    inner: W,
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let clean = crate::panic::redact_secrets(&text);
        self.inner.write_all(clean.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A [`SpanProcessor`] that redacts string attributes, event names and
/// attributes, link attributes and status messages of every span before
/// handing it to the wrapped processor (the batch exporter).
#[derive(Debug)]
pub struct RedactingProcessor<P> {
    inner: P,
}

impl<P> RedactingProcessor<P> {
    pub fn new(inner: P) -> Self {
        RedactingProcessor { inner }
    }
}

fn clean_str(s: &str) -> Option<String> {
    match redact_tokens(s) {
        Cow::Borrowed(_) => None,
        Cow::Owned(o) => Some(o),
    }
}

fn clean_cow(s: &mut Cow<'static, str>) {
    if let Some(c) = clean_str(s) {
        *s = Cow::Owned(c);
    }
}

fn clean_value(v: &mut Value) {
    match v {
        Value::String(s) => {
            if let Some(c) = clean_str(s.as_str()) {
                *s = StringValue::from(c);
            }
        }
        Value::Array(Array::String(items)) => {
            for s in items {
                if let Some(c) = clean_str(s.as_str()) {
                    *s = StringValue::from(c);
                }
            }
        }
        _ => {}
    }
}

fn clean_attributes(attrs: &mut [KeyValue]) {
    for kv in attrs {
        clean_value(&mut kv.value);
    }
}

/// Redacts a finished span in place.
pub fn redact_span(span: &mut SpanData) {
    clean_cow(&mut span.name);
    clean_attributes(&mut span.attributes);
    for event in span.events.events.iter_mut() {
        clean_cow(&mut event.name);
        clean_attributes(&mut event.attributes);
    }
    for link in span.links.links.iter_mut() {
        clean_attributes(&mut link.attributes);
    }
    if let Status::Error { description } = &mut span.status {
        clean_cow(description);
    }
}

impl<P: SpanProcessor> SpanProcessor for RedactingProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        redact_span(&mut span);
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    const TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ";

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    fn logged(json: bool, emit: impl FnOnce()) -> String {
        let buf = Buf::default();
        let writer = Redacting::new(buf.clone());
        let builder = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(writer);
        if json {
            tracing::subscriber::with_default(builder.json().finish(), emit);
        } else {
            tracing::subscriber::with_default(builder.finish(), emit);
        }
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn log_lines_never_carry_a_token() {
        for json in [false, true] {
            let out = logged(json, || {
                let url = format!("https://api.telegram.org/bot{TOKEN}/sendMessage");
                let span = tracing::info_span!("request", url = %url);
                let _e = span.enter();
                tracing::debug!(%url, "starting request");
                tracing::trace!("raw {TOKEN} in the message");
                tracing::warn!(token = TOKEN, "a field");
            });
            assert!(!out.contains(TOKEN), "token leaked (json={json}):\n{out}");
            assert!(
                !out.contains("AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"),
                "secret leaked (json={json}):\n{out}"
            );
            assert!(out.contains("123456789:***"), "{out}");
            assert_eq!(out.lines().count(), 3, "{out}");
            assert!(out.contains("starting request"));
        }
    }

    #[test]
    fn spans_are_redacted_before_export() {
        let mut span = SpanData {
            span_context: opentelemetry::trace::SpanContext::empty_context(),
            parent_span_id: opentelemetry::trace::SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: opentelemetry::trace::SpanKind::Internal,
            name: Cow::Owned(format!("GET /bot{TOKEN}/getMe")),
            start_time: std::time::SystemTime::now(),
            end_time: std::time::SystemTime::now(),
            attributes: vec![
                KeyValue::new("url", format!("https://x/bot{TOKEN}/sendMessage")),
                KeyValue::new("chat_id", 42i64),
                KeyValue::new("bot", "alpha"),
                KeyValue::new(
                    "list",
                    Value::Array(Array::String(vec![StringValue::from(TOKEN.to_owned())])),
                ),
            ],
            dropped_attributes_count: 0,
            events: opentelemetry_sdk::trace::SpanEvents::default(),
            links: opentelemetry_sdk::trace::SpanLinks::default(),
            status: Status::Error {
                description: Cow::Owned(format!("failed for {TOKEN}")),
            },
            instrumentation_scope: opentelemetry::InstrumentationScope::builder("t").build(),
        };
        span.events.events.push(opentelemetry::trace::Event::new(
            format!("sending with {TOKEN}"),
            std::time::SystemTime::now(),
            vec![KeyValue::new("token", TOKEN)],
            0,
        ));
        redact_span(&mut span);
        let dump = format!("{span:?}");
        assert!(
            !dump.contains("AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"),
            "{dump}"
        );
        assert!(dump.contains("123456789:***"), "{dump}");
        assert!(dump.contains("alpha"));
        assert_eq!(span.attributes[1].value, Value::I64(42));
    }
}
