//! `tracing` across processes: events in a child reach the root's subscriber, tagged
//! with the name of the process where they happened.
//!
//! A child installs a small forwarding subscriber (when its parent had one) that sends
//! each event up its control link; intermediate processes pass records up unchanged;
//! the root re-emits them under the target `multiproc::child` with a `process` field.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use multiproc_core::{LogRecord, Packet};
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
        };
        let _ = tracing::subscriber::set_global_default(sub);
    }
}

/// A record that came up from a child: emit it here in the root, pass it up otherwise.
pub(crate) fn from_child(record: LogRecord) {
    if let Some(up) = UPLINK.get() {
        let _ = up.send(Outgoing::Packet(Packet::Log(record)));
        return;
    }
    let LogRecord {
        level,
        target,
        process,
        message,
    } = record;
    macro_rules! emit {
        ($lvl:expr) => {
            tracing::event!(target: "multiproc::child", $lvl, process = %process, source = %target, "{message}")
        };
    }
    match level {
        1 => emit!(Level::ERROR),
        2 => emit!(Level::WARN),
        3 => emit!(Level::INFO),
        4 => emit!(Level::DEBUG),
        _ => emit!(Level::TRACE),
    }
}

struct Forward {
    max: LevelFilter,
    next_span: AtomicU64,
}

impl Subscriber for Forward {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.max >= *metadata.level()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let Some(up) = uplink() else { return };
        let meta = event.metadata();
        let mut text = Text::default();
        event.record(&mut text);
        let level = match *meta.level() {
            Level::ERROR => 1,
            Level::WARN => 2,
            Level::INFO => 3,
            Level::DEBUG => 4,
            Level::TRACE => 5,
        };
        let record = LogRecord {
            level,
            target: meta.target().to_string(),
            process: me().name.clone(),
            message: text.0,
        };
        let _ = up.send(Outgoing::Packet(Packet::Log(record)));
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// The message first, then the other fields as `name=value`.
#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let fields = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}");
            if !fields.is_empty() {
                self.0.push(' ');
                self.0.push_str(&fields);
            }
        } else {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            let _ = write!(self.0, "{}={value}", field.name());
        }
    }
}
