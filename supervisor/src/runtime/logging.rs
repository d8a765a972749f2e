//! `tracing` across processes: events in a child reach the root's subscriber as they
//! happened there: their target, level, callsite, typed fields and the spans they were
//! in, with the name of the process.
//!
//! A child installs a small forwarding subscriber (when its parent had one) that keeps
//! its spans' fields and sends each event up its control link with them; intermediate
//! processes pass records up unchanged; the root emits them again through callsites
//! made for them ([`replay`]), so its own filter (`RUST_LOG`, an `EnvFilter`) judges a
//! child's event by the child's target and level, as it would its own.

pub(crate) mod carry;
mod replay;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use multiproc_core::{LogField, LogRecord, LogSpan, LogValue, Packet};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use crate::runtime::current::me;
use crate::runtime::link::Outgoing;
use crate::runtime::router::LinkTx;

static UPLINK: OnceLock<LinkTx> = OnceLock::new();

/// The level to ask a new child to forward: what this process's subscriber wants.
pub(crate) fn forward_level() -> Option<u8> {
    match LevelFilter::current().into_level()? {
        Level::ERROR => Some(1),
        Level::WARN => Some(2),
        Level::INFO => Some(3),
        Level::DEBUG => Some(4),
        Level::TRACE => Some(5),
    }
}

fn level_number(level: Level) -> u8 {
    match level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

fn level_of(n: u8) -> LevelFilter {
    match n {
        0 => LevelFilter::OFF,
        1 => LevelFilter::ERROR,
        2 => LevelFilter::WARN,
        3 => LevelFilter::INFO,
        4 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// In a child: the link that events are forwarded up, once it is served.
pub(crate) fn set_uplink(uplink: LinkTx) {
    let _ = UPLINK.set(uplink);
}

/// The link to forward up; in a child whose link to its parent waits for the
/// runtime, the first event starts both.
fn uplink() -> Option<&'static LinkTx> {
    if let Some(up) = UPLINK.get() {
        return Some(up);
    }
    if crate::runtime::start_deferred() {
        let _ = crate::runtime::ensure();
    }
    UPLINK.get()
}

/// In a child: forward events up its link at `level` and below.
pub(crate) fn install_forwarder(level: Option<u8>) {
    if let Some(level) = level {
        let sub = Forward {
            max: level_of(level),
            next_span: AtomicU64::new(1),
            spans: Mutex::new(HashMap::new()),
        };
        let _ = tracing::subscriber::set_global_default(sub);
    }
}

/// A record that came up from a child: emit it here in the root, pass it up otherwise.
pub(crate) fn from_child(record: Box<LogRecord>) {
    if let Some(up) = UPLINK.get() {
        let _ = up.send(Outgoing::Packet(Packet::Log(record)));
        return;
    }
    replay::emit(&record);
}

/// Most spans an event carries up: the innermost ones are kept.
const MAX_SPANS: usize = 32;
/// Most fields of one event or span carried up.
const MAX_FIELDS: usize = 32;
/// Longest text value carried up, in bytes; longer ones are cut at a char boundary.
const MAX_TEXT: usize = 16 * 1024;

/// A span of this process, as the forwarder knows it.
struct SpanData {
    span: LogSpan,
    /// Handles to it still alive (`clone_span`/`try_close`).
    refs: usize,
}

thread_local! {
    /// The spans this thread is in, outermost first.
    static STACK: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

struct Forward {
    max: LevelFilter,
    next_span: AtomicU64,
    spans: Mutex<HashMap<u64, SpanData>>,
}

impl Forward {
    fn spans(&self) -> std::sync::MutexGuard<'_, HashMap<u64, SpanData>> {
        self.spans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The spans an event is in: its explicit parent's chain is not kept by this
    /// subscriber, so an explicit parent stands alone; otherwise this thread's stack.
    fn context(&self, event: &Event<'_>) -> Vec<LogSpan> {
        let ids: Vec<u64> = if let Some(parent) = event.parent() {
            vec![parent.into_u64()]
        } else if event.is_root() {
            Vec::new()
        } else {
            STACK.with(|s| s.borrow().clone())
        };
        let spans = self.spans();
        let skip = ids.len().saturating_sub(MAX_SPANS);
        ids[skip..]
            .iter()
            .filter_map(|id| spans.get(id).map(|d| d.span.clone()))
            .collect()
    }
}

impl Subscriber for Forward {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.max >= *metadata.level()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max)
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = self.next_span.fetch_add(1, Ordering::Relaxed);
        let meta = attrs.metadata();
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let span = LogSpan {
            name: meta.name().to_string(),
            target: meta.target().to_string(),
            level: level_number(*meta.level()),
            fields: fields.0,
        };
        self.spans().insert(id, SpanData { span, refs: 1 });
        Id::from_u64(id)
    }

    fn record(&self, id: &Id, values: &Record<'_>) {
        let mut fields = Fields::default();
        values.record(&mut fields);
        if let Some(data) = self.spans().get_mut(&id.into_u64()) {
            let known = &mut data.span.fields;
            for field in fields.0 {
                match known.iter().position(|f| f.name == field.name) {
                    Some(at) => known[at].value = field.value,
                    None if known.len() < MAX_FIELDS => known.push(field),
                    None => {}
                }
            }
        }
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let Some(up) = uplink() else { return };
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let record = LogRecord {
            level: level_number(*meta.level()),
            target: meta.target().to_string(),
            name: meta.name().to_string(),
            module_path: meta.module_path().map(str::to_string),
            file: meta.file().map(str::to_string),
            line: meta.line(),
            process: me().name.clone(),
            fields: fields.0,
            spans: self.context(event),
            caller: carry::stamp(),
        };
        let _ = up.send(Outgoing::Packet(Packet::Log(Box::new(record))));
    }

    fn enter(&self, id: &Id) {
        STACK.with(|s| s.borrow_mut().push(id.into_u64()));
    }

    fn exit(&self, id: &Id) {
        let id = id.into_u64();
        STACK.with(|s| {
            let mut stack = s.borrow_mut();
            if let Some(at) = stack.iter().rposition(|&i| i == id) {
                stack.remove(at);
            }
        });
    }

    fn clone_span(&self, id: &Id) -> Id {
        if let Some(data) = self.spans().get_mut(&id.into_u64()) {
            data.refs += 1;
        }
        id.clone()
    }

    fn try_close(&self, id: Id) -> bool {
        let mut spans = self.spans();
        let key = id.into_u64();
        match spans.get_mut(&key) {
            Some(data) if data.refs > 1 => {
                data.refs -= 1;
                false
            }
            Some(_) => {
                spans.remove(&key);
                true
            }
            None => false,
        }
    }
}

/// An event's or span's fields, with their types.
#[derive(Default)]
struct Fields(Vec<LogField>);

impl Fields {
    fn push(&mut self, field: &Field, value: LogValue) {
        if self.0.len() < MAX_FIELDS {
            self.0.push(LogField {
                name: field.name().to_string(),
                value,
            });
        }
    }
}

/// `text`, cut to [`MAX_TEXT`] bytes at a char boundary.
fn bounded(mut text: String) -> String {
    if text.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.push(field, LogValue::Text(bounded(format!("{value:?}"))));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let mut end = value.len().min(MAX_TEXT);
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        self.push(field, LogValue::Str(value[..end].to_string()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, LogValue::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, LogValue::U64(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, LogValue::F64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, LogValue::Bool(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, LogValue::Text(bounded(value.to_string())));
    }
}
