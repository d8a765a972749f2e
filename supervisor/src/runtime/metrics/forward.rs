//! A child's forwarding recorder, which sends what its process records up the control
//! link in batches, and what becomes of a batch that came up from a child.
//!
//! A batch leaves at most every [`FLUSH_EVERY`] while metrics change, a last one
//! [`FLUSH_EVERY`] after the last change, and one before the child's exit report, so
//! what a child recorded is counted by the time its parent sees it exit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Label, Metadata,
    Recorder, SharedString, Unit,
};
use multiproc_core::{MetricBatch, MetricChange, MetricUpdate, Packet};

use super::PROCESS_LABEL;
use crate::runtime::current::me;
use crate::runtime::router;

/// How often, at most, a child sends a batch while its metrics change.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Most samples of one histogram in one batch: a child recording faster than that
/// loses the rest rather than grow its batch without bound.
const MAX_SAMPLES: usize = 4096;

/// A batch that came up from a child: recorded here in the root, passed up otherwise.
pub(crate) fn from_child(batch: Box<MetricBatch>) {
    if !me().identity.is_root() {
        router::to_parent(Packet::Metrics(batch));
        return;
    }
    for update in batch.updates {
        let mut labels: Vec<Label> = update
            .labels
            .into_iter()
            .map(|(k, v)| Label::new(k, v))
            .collect();
        if !labels.iter().any(|l| l.key() == PROCESS_LABEL) {
            labels.push(Label::new(PROCESS_LABEL, batch.process.clone()));
        }
        let key = Key::from_parts(update.name, labels);
        metrics::with_recorder(|r| match update.change {
            MetricChange::Counter(n) => r.register_counter(&key, &METADATA).increment(n),
            MetricChange::Gauge(v) => r.register_gauge(&key, &METADATA).set(v),
            MetricChange::Histogram(samples) => {
                let h = r.register_histogram(&key, &METADATA);
                for v in samples {
                    h.record(v);
                }
            }
        });
    }
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// In a child: records into a forwarding recorder from now on.
pub(crate) fn install_forwarder() {
    let _ = metrics::set_global_recorder(forward());
}

/// In a child: sends what was recorded since the last batch, now (before its exit
/// report).
pub(crate) fn flush() {
    if let Some(f) = FORWARD.get() {
        f.flush();
    }
}

static FORWARD: OnceLock<Forward> = OnceLock::new();

fn forward() -> &'static Forward {
    FORWARD.get_or_init(|| Forward {
        metrics: Mutex::new(HashMap::new()),
        epoch: Instant::now(),
        last_flush: AtomicU64::new(0),
        trailing: AtomicBool::new(false),
    })
}

/// A child's recorder: keeps each metric's change until the next batch.
struct Forward {
    metrics: Mutex<HashMap<Key, Arc<Kept>>>,
    epoch: Instant,
    /// When the last batch left, in microseconds since `epoch`.
    last_flush: AtomicU64,
    /// A batch is due [`FLUSH_EVERY`] from the last one.
    trailing: AtomicBool,
}

/// One metric's change since the last batch.
enum Kept {
    Counter {
        total: AtomicU64,
        sent: AtomicU64,
    },
    Gauge {
        bits: AtomicU64,
        changed: AtomicBool,
    },
    Histogram(Mutex<Vec<f64>>),
}

/// A handle the child's code records through.
struct Handle {
    kept: Arc<Kept>,
}

impl Forward {
    fn register(&self, key: &Key, make: impl FnOnce() -> Kept) -> Arc<Handle> {
        let mut metrics = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        let kept = Arc::clone(
            metrics
                .entry(key.clone())
                .or_insert_with(|| Arc::new(make())),
        );
        Arc::new(Handle { kept })
    }

    fn micros(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// A metric changed: a batch leaves now if the last left long enough ago, else
    /// one is made due.
    fn changed(&'static self) {
        let now = self.micros();
        let last = self.last_flush.load(Ordering::Relaxed);
        let every = FLUSH_EVERY.as_micros() as u64;
        if now.saturating_sub(last) >= every
            && self
                .last_flush
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.flush();
            return;
        }
        if !self.trailing.swap(true, Ordering::AcqRel)
            && let Ok(rt) = crate::runtime::ensure()
        {
            rt.spawn(async move {
                tokio::time::sleep(FLUSH_EVERY).await;
                self.trailing.store(false, Ordering::Release);
                self.last_flush.store(self.micros(), Ordering::Relaxed);
                self.flush();
            });
        }
    }

    fn flush(&self) {
        let mut updates = Vec::new();
        {
            let metrics = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
            for (key, kept) in metrics.iter() {
                if let Some(change) = kept.take() {
                    updates.push(MetricUpdate {
                        name: key.name().to_string(),
                        labels: key
                            .labels()
                            .map(|l| (l.key().to_string(), l.value().to_string()))
                            .collect(),
                        change,
                    });
                }
            }
        }
        if !updates.is_empty() {
            router::to_parent(Packet::Metrics(Box::new(MetricBatch {
                process: me().name.clone(),
                updates,
            })));
        }
    }
}

impl Kept {
    /// The change since the last call, if any.
    fn take(&self) -> Option<MetricChange> {
        match self {
            Kept::Counter { total, sent } => {
                let total = total.load(Ordering::Acquire);
                let before = sent.swap(total, Ordering::AcqRel);
                (total > before).then(|| MetricChange::Counter(total - before))
            }
            Kept::Gauge { bits, changed } => changed
                .swap(false, Ordering::AcqRel)
                .then(|| MetricChange::Gauge(f64::from_bits(bits.load(Ordering::Acquire)))),
            Kept::Histogram(samples) => {
                let taken = std::mem::take(&mut *samples.lock().unwrap_or_else(|e| e.into_inner()));
                (!taken.is_empty()).then_some(MetricChange::Histogram(taken))
            }
        }
    }
}

impl CounterFn for Handle {
    fn increment(&self, value: u64) {
        if let Kept::Counter { total, .. } = &*self.kept {
            total.fetch_add(value, Ordering::AcqRel);
            forward().changed();
        }
    }

    fn absolute(&self, value: u64) {
        if let Kept::Counter { total, .. } = &*self.kept {
            total.fetch_max(value, Ordering::AcqRel);
            forward().changed();
        }
    }
}

impl Handle {
    fn gauge(&self, f: impl Fn(f64) -> f64) {
        if let Kept::Gauge { bits, changed } = &*self.kept {
            let _ = bits.fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some(f(f64::from_bits(b)).to_bits())
            });
            changed.store(true, Ordering::Release);
            forward().changed();
        }
    }
}

impl GaugeFn for Handle {
    fn increment(&self, value: f64) {
        self.gauge(|v| v + value);
    }

    fn decrement(&self, value: f64) {
        self.gauge(|v| v - value);
    }

    fn set(&self, value: f64) {
        self.gauge(|_| value);
    }
}

impl HistogramFn for Handle {
    fn record(&self, value: f64) {
        if let Kept::Histogram(samples) = &*self.kept {
            {
                let mut samples = samples.lock().unwrap_or_else(|e| e.into_inner());
                if samples.len() >= MAX_SAMPLES {
                    return;
                }
                samples.push(value);
            }
            forward().changed();
        }
    }
}

impl Recorder for Forward {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.register(key, || Kept::Counter {
            total: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        }))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.register(key, || Kept::Gauge {
            bits: AtomicU64::new(0f64.to_bits()),
            changed: AtomicBool::new(false),
        }))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.register(key, || Kept::Histogram(Mutex::new(Vec::new()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_metric_gives_its_change_once() {
        let counter = Kept::Counter {
            total: AtomicU64::new(5),
            sent: AtomicU64::new(2),
        };
        assert_eq!(counter.take(), Some(MetricChange::Counter(3)));
        assert_eq!(counter.take(), None);
        let gauge = Kept::Gauge {
            bits: AtomicU64::new(2.5f64.to_bits()),
            changed: AtomicBool::new(true),
        };
        assert_eq!(gauge.take(), Some(MetricChange::Gauge(2.5)));
        assert_eq!(gauge.take(), None);
        let histogram = Kept::Histogram(Mutex::new(vec![1.0, 2.0]));
        assert_eq!(
            histogram.take(),
            Some(MetricChange::Histogram(vec![1.0, 2.0]))
        );
        assert_eq!(histogram.take(), None);
    }
}
