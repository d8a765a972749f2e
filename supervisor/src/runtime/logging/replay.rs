//! The root's side: a child's event emitted again through a callsite made for it.
//!
//! `tracing` knows a callsite by its static metadata, and a subscriber's filter judges
//! an event by it (target, level, name, field names). A child's callsites exist in the
//! root's program too, but nothing names them across processes, so the root makes one
//! callsite per distinct (kind, name, target, level, fields, place) it receives,
//! registers it, and keeps it for the life of the process, as `tracing-log` does for
//! `log` records. A program has a fixed set of callsites, so the set stays small; past
//! [`MAX_CALLSITES`] (a child making names up), events fall back to one generic
//! callsite with the fields as text.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

use multiproc_core::{LogField, LogRecord, LogSpan, LogValue};
use tracing::field::{DebugValue, FieldSet, Value, debug, display};
use tracing::metadata::Kind;
use tracing::{Level, Metadata};
use tracing_core::callsite::{self, Callsite, Identifier};
use tracing_core::subscriber::Interest;

/// Most callsites made for children's events and spans.
const MAX_CALLSITES: usize = 4096;

/// The field every replayed event gains: the process it happened in.
const PROCESS: &str = "process";

/// Emits a child's event here, inside its spans and a span for its process.
pub(super) fn emit(record: &LogRecord) {
    // The caller's span, if the event happened in a call or task made in one, holds
    // all the rest; counted as replayed whether or not the filter lets the event on.
    let _caller = record
        .caller
        .and_then(super::carry::replayed)
        .map(tracing::Span::entered);
    let names: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
    let Some(event) = site(Site {
        kind: SiteKind::Event,
        name: &record.name,
        target: &record.target,
        level: record.level,
        fields: &names,
        module_path: record.module_path.as_deref(),
        file: record.file.as_deref(),
        line: record.line,
    }) else {
        return emit_as_text(record);
    };
    if !enabled(event) {
        return;
    }
    // The process's span, then the child's spans, each entered so the next is its
    // child; left in reverse order when dropped.
    let mut entered = Vec::with_capacity(record.spans.len() + 1);
    if let Some(span) = process_span(&record.process) {
        entered.push(span.entered());
    }
    for span in &record.spans {
        if let Some(span) = replay_span(span) {
            entered.push(span.entered());
        }
    }
    let process = display(&record.process);
    let texts = texts(&record.fields);
    let mut values = values(&record.fields, &texts);
    values.push(Some(&process));
    tracing::Event::dispatch(event, &event.fields().value_set_all(&values));
    while entered.pop().is_some() {}
}

/// The span `process{name=…}` in which a child's events are replayed.
fn process_span(process: &str) -> Option<tracing::Span> {
    static SITE: OnceLock<Option<&'static Metadata<'static>>> = OnceLock::new();
    let meta = (*SITE.get_or_init(|| {
        site(Site {
            kind: SiteKind::Span,
            name: "process",
            target: "multiproc",
            level: 3,
            fields: &["name"],
            module_path: None,
            file: None,
            line: None,
        })
    }))?;
    if !enabled(meta) {
        return None;
    }
    let name = display(process);
    let values: [Option<&dyn Value>; 1] = [Some(&name)];
    Some(tracing::Span::new(
        meta,
        &meta.fields().value_set_all(&values),
    ))
}

fn replay_span(span: &LogSpan) -> Option<tracing::Span> {
    let names: Vec<&str> = span.fields.iter().map(|f| f.name.as_str()).collect();
    let meta = site(Site {
        kind: SiteKind::Span,
        name: &span.name,
        target: &span.target,
        level: span.level,
        fields: &names,
        module_path: None,
        file: None,
        line: None,
    })?;
    if !enabled(meta) {
        return None;
    }
    let texts = texts(&span.fields);
    let values = values(&span.fields, &texts);
    Some(tracing::Span::new(
        meta,
        &meta.fields().value_set_all(&values),
    ))
}

/// The fields' formatted values (`Debug`, `Display`, errors), made into values that
/// print as they did in the child: as written, not as a quoted string.
fn texts(fields: &[LogField]) -> Vec<DebugValue<Raw<'_>>> {
    fields
        .iter()
        .filter_map(|f| match &f.value {
            LogValue::Text(t) => Some(debug(Raw(t))),
            _ => None,
        })
        .collect()
}

/// Each field's value, in order; formatted ones from `texts`, in the same order.
fn values<'a>(
    fields: &'a [LogField],
    texts: &'a [DebugValue<Raw<'a>>],
) -> Vec<Option<&'a dyn Value>> {
    let mut texts = texts.iter();
    fields
        .iter()
        .map(|f| -> Option<&dyn Value> {
            match &f.value {
                LogValue::Str(s) => Some(s),
                LogValue::I64(n) => Some(n),
                LogValue::U64(n) => Some(n),
                LogValue::F64(n) => Some(n),
                LogValue::Bool(b) => Some(b),
                LogValue::Text(_) => texts.next().map(|t| t as &dyn Value),
            }
        })
        .collect()
}

/// Text that formats as itself.
struct Raw<'a>(&'a str);

impl std::fmt::Debug for Raw<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// The event as text under one callsite, for when no callsite can be made for it.
fn emit_as_text(record: &LogRecord) {
    let mut text = String::new();
    for field in &record.fields {
        if !text.is_empty() {
            text.push(' ');
        }
        if field.name != "message" {
            let _ = write!(text, "{}=", field.name);
        }
        match &field.value {
            LogValue::Str(s) | LogValue::Text(s) => text.push_str(s),
            LogValue::I64(n) => {
                let _ = write!(text, "{n}");
            }
            LogValue::U64(n) => {
                let _ = write!(text, "{n}");
            }
            LogValue::F64(n) => {
                let _ = write!(text, "{n}");
            }
            LogValue::Bool(b) => {
                let _ = write!(text, "{b}");
            }
        }
    }
    let process = &record.process;
    let source = &record.target;
    macro_rules! emit {
        ($lvl:expr) => {
            tracing::event!(target: "multiproc::child", $lvl, process = %process, source = %source, "{text}")
        };
    }
    match record.level {
        1 => emit!(Level::ERROR),
        2 => emit!(Level::WARN),
        3 => emit!(Level::INFO),
        4 => emit!(Level::DEBUG),
        _ => emit!(Level::TRACE),
    }
}

fn enabled(meta: &'static Metadata<'static>) -> bool {
    tracing::dispatcher::get_default(|d| d.enabled(meta))
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum SiteKind {
    Event,
    Span,
}

/// What a callsite is made for.
struct Site<'a> {
    kind: SiteKind,
    name: &'a str,
    target: &'a str,
    level: u8,
    fields: &'a [&'a str],
    module_path: Option<&'a str>,
    file: Option<&'a str>,
    line: Option<u32>,
}

#[derive(PartialEq, Eq, Hash)]
struct Key {
    kind: SiteKind,
    name: String,
    target: String,
    level: u8,
    fields: Vec<String>,
    module_path: Option<String>,
    file: Option<String>,
    line: Option<u32>,
}

/// The callsite's metadata for `site`, made and registered the first time; `None`
/// past [`MAX_CALLSITES`].
fn site(site: Site<'_>) -> Option<&'static Metadata<'static>> {
    static SITES: OnceLock<Mutex<HashMap<Key, &'static Metadata<'static>>>> = OnceLock::new();
    let mut fields: Vec<String> = site.fields.iter().map(|f| f.to_string()).collect();
    if site.kind == SiteKind::Event {
        fields.push(PROCESS.to_string());
    }
    let key = Key {
        kind: site.kind,
        name: site.name.to_string(),
        target: site.target.to_string(),
        level: site.level,
        fields,
        module_path: site.module_path.map(str::to_string),
        file: site.file.map(str::to_string),
        line: site.line,
    };
    let mut sites = SITES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(meta) = sites.get(&key) {
        return Some(meta);
    }
    if sites.len() >= MAX_CALLSITES {
        return None;
    }
    let (callsite, meta) = make(&key);
    sites.insert(key, meta);
    drop(sites);
    // Registering asks every subscriber for its interest, which may log: not under
    // the lock.
    callsite::register(callsite);
    Some(meta)
}

/// Leaks what a callsite needs for the life of the process, as a static would.
fn make(key: &Key) -> (&'static Replayed, &'static Metadata<'static>) {
    fn leak(s: &str) -> &'static str {
        Box::leak(s.to_string().into_boxed_str())
    }
    let names: &'static [&'static str] = Box::leak(
        key.fields
            .iter()
            .map(|f| leak(f))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    let site: &'static Replayed = Box::leak(Box::new(Replayed {
        meta: OnceLock::new(),
        interest: AtomicU8::new(0),
    }));
    let level = match key.level {
        1 => Level::ERROR,
        2 => Level::WARN,
        3 => Level::INFO,
        4 => Level::DEBUG,
        _ => Level::TRACE,
    };
    let kind = match key.kind {
        SiteKind::Event => Kind::EVENT,
        SiteKind::Span => Kind::SPAN,
    };
    let meta: &'static Metadata<'static> = Box::leak(Box::new(Metadata::new(
        leak(&key.name),
        leak(&key.target),
        level,
        key.file.as_deref().map(leak),
        key.line,
        key.module_path.as_deref().map(leak),
        FieldSet::new(names, Identifier(site)),
        kind,
    )));
    let _ = site.meta.set(meta);
    (site, meta)
}

/// A callsite made at run time for a child's event or span.
struct Replayed {
    meta: OnceLock<&'static Metadata<'static>>,
    /// The subscribers' interest: 0 never, 1 sometimes, 2 always.
    interest: AtomicU8,
}

impl Callsite for Replayed {
    fn set_interest(&self, interest: Interest) {
        let n = if interest.is_never() {
            0
        } else if interest.is_always() {
            2
        } else {
            1
        };
        self.interest.store(n, Ordering::Relaxed);
    }

    fn metadata(&self) -> &Metadata<'_> {
        self.meta
            .get()
            .copied()
            .unwrap_or_else(|| unreachable!("set when made"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    /// Counts the events it sees by whether they kept their target.
    #[derive(Default)]
    struct Count {
        kept: AtomicUsize,
        as_text: AtomicUsize,
    }

    impl tracing::Subscriber for Count {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            if event.metadata().target() == "multiproc::child" {
                self.as_text.fetch_add(1, Ordering::Relaxed);
            } else if event.metadata().target().starts_with("made::up::") {
                self.kept.fetch_add(1, Ordering::Relaxed);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    fn record(target: String) -> LogRecord {
        LogRecord {
            level: 3,
            target,
            name: "event".into(),
            module_path: None,
            file: None,
            line: None,
            process: "Process-1".into(),
            fields: vec![LogField {
                name: "message".into(),
                value: LogValue::Text("hi".into()),
            }],
            spans: Vec::new(),
            caller: None,
        }
    }

    #[test]
    fn a_child_making_up_targets_costs_a_bounded_number_of_callsites() {
        let count = Arc::new(Count::default());
        let n = MAX_CALLSITES + 100;
        tracing::subscriber::with_default(Arc::clone(&count), || {
            for i in 0..n {
                emit(&record(format!("made::up::{i}")));
            }
        });
        let kept = count.kept.load(Ordering::Relaxed);
        let as_text = count.as_text.load(Ordering::Relaxed);
        // Every event is delivered; those past the bound under the generic callsite.
        assert_eq!(kept + as_text, n);
        assert!(kept <= MAX_CALLSITES, "{kept} callsites made");
        assert!(as_text >= 100, "{as_text} as text");
    }
}
