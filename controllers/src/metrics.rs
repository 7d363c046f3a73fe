//! Prometheus metrics of the runtime, rendered in the text exposition
//! format 0.0.4 for `GET /metrics`.
//!
//! Hand-written rather than built on `prometheus-client`: five metric
//! families with fixed labels do not need a registry library, the hot path
//! is a few relaxed atomic increments with no lock and no allocation, and
//! the crate gains no dependency. The limit: only what this runtime
//! measures can be registered here.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of the reconcile duration histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How a reconcile ended, as the `result` label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReconcileResult {
    /// `Ok(action)`.
    Success,
    /// A transient error.
    Error,
    /// A terminal error.
    Terminal,
    /// A panic caught by the panic layer.
    Panic,
    /// The timeout layer gave up.
    Timeout,
}

impl ReconcileResult {
    const ALL: [ReconcileResult; 5] = [
        ReconcileResult::Success,
        ReconcileResult::Error,
        ReconcileResult::Terminal,
        ReconcileResult::Panic,
        ReconcileResult::Timeout,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ReconcileResult::Success => "success",
            ReconcileResult::Error => "error",
            ReconcileResult::Terminal => "terminal",
            ReconcileResult::Panic => "panic",
            ReconcileResult::Timeout => "timeout",
        }
    }
}

/// Every controller's metrics. Shared as an `Arc` between the
/// [`Manager`](crate::Manager) and whoever serves `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    controllers: Mutex<BTreeMap<String, Arc<ControllerMetrics>>>,
}

/// The metrics of one controller.
#[derive(Debug, Default)]
pub struct ControllerMetrics {
    leader: AtomicI64,
    queue_depth: AtomicI64,
    reconciles: [AtomicU64; 5],
    buckets: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_nanos: AtomicU64,
    backoffs: AtomicU64,
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The metrics of `controller`, registered on first use.
    pub fn controller(&self, controller: &str) -> Arc<ControllerMetrics> {
        let mut map = self.controllers.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(controller.to_string()).or_default().clone()
    }

    /// Everything, in the Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let map = self
            .controllers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut out = String::new();
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
        };
        family(
            &mut out,
            "sdc_docker_controller_leader",
            "gauge",
            "1 while this instance runs the controller (leads its election, or it is node-scoped).",
        );
        for (name, m) in &map {
            let _ = writeln!(
                out,
                "sdc_docker_controller_leader{{controller=\"{}\"}} {}",
                escape(name),
                m.leader.load(Ordering::Relaxed)
            );
        }
        family(
            &mut out,
            "sdc_docker_controller_queue_depth",
            "gauge",
            "Keys waiting in the work queue.",
        );
        for (name, m) in &map {
            let _ = writeln!(
                out,
                "sdc_docker_controller_queue_depth{{controller=\"{}\"}} {}",
                escape(name),
                m.queue_depth.load(Ordering::Relaxed)
            );
        }
        family(
            &mut out,
            "sdc_docker_controller_reconciles_total",
            "counter",
            "Reconciles finished, by result.",
        );
        for (name, m) in &map {
            for result in ReconcileResult::ALL {
                let _ = writeln!(
                    out,
                    "sdc_docker_controller_reconciles_total{{controller=\"{}\",result=\"{}\"}} {}",
                    escape(name),
                    result.as_str(),
                    m.reconciles[result as usize].load(Ordering::Relaxed)
                );
            }
        }
        family(
            &mut out,
            "sdc_docker_controller_reconcile_duration_seconds",
            "histogram",
            "How long reconciles took.",
        );
        for (name, m) in &map {
            let name = escape(name);
            let mut cumulative = 0;
            for (i, le) in BUCKETS.iter().enumerate() {
                cumulative += m.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "sdc_docker_controller_reconcile_duration_seconds_bucket{{controller=\"{name}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let count = m.duration_count.load(Ordering::Relaxed);
            let sum = m.duration_sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "sdc_docker_controller_reconcile_duration_seconds_bucket{{controller=\"{name}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "sdc_docker_controller_reconcile_duration_seconds_sum{{controller=\"{name}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "sdc_docker_controller_reconcile_duration_seconds_count{{controller=\"{name}\"}} {count}"
            );
        }
        family(
            &mut out,
            "sdc_docker_controller_backoffs_total",
            "counter",
            "Keys put into backoff after a failed reconcile.",
        );
        for (name, m) in &map {
            let _ = writeln!(
                out,
                "sdc_docker_controller_backoffs_total{{controller=\"{}\"}} {}",
                escape(name),
                m.backoffs.load(Ordering::Relaxed)
            );
        }
        out
    }
}

impl ControllerMetrics {
    /// Set the leader gauge.
    pub fn set_leader(&self, leading: bool) {
        self.leader.store(leading as i64, Ordering::Relaxed);
    }

    /// Whether the leader gauge is 1.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed) == 1
    }

    /// Set the queue depth gauge.
    pub fn set_queue_depth(&self, depth: usize) {
        self.queue_depth.store(depth as i64, Ordering::Relaxed);
    }

    /// The queue depth gauge.
    pub fn queue_depth(&self) -> i64 {
        self.queue_depth.load(Ordering::Relaxed)
    }

    /// Count one finished reconcile and its duration.
    pub fn observe(&self, result: ReconcileResult, took: Duration) {
        self.reconciles[result as usize].fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|le| secs <= *le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.duration_count.fetch_add(1, Ordering::Relaxed);
        self.duration_sum_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    /// How many reconciles ended with `result`.
    pub fn reconciles(&self, result: ReconcileResult) -> u64 {
        self.reconciles[result as usize].load(Ordering::Relaxed)
    }

    /// Count one key put into backoff.
    pub fn backoff(&self) {
        self.backoffs.fetch_add(1, Ordering::Relaxed);
    }

    /// How many times keys were put into backoff.
    pub fn backoffs(&self) -> u64 {
        self.backoffs.load(Ordering::Relaxed)
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_has_every_family_with_help_type_and_labels() {
        let metrics = Metrics::new();
        let m = metrics.controller("provision");
        m.set_leader(true);
        m.set_queue_depth(3);
        m.observe(ReconcileResult::Success, Duration::from_millis(20));
        m.observe(ReconcileResult::Panic, Duration::from_secs(20));
        m.backoff();
        let text = metrics.render();
        for line in [
            "# TYPE sdc_docker_controller_leader gauge",
            "sdc_docker_controller_leader{controller=\"provision\"} 1",
            "sdc_docker_controller_queue_depth{controller=\"provision\"} 3",
            "sdc_docker_controller_reconciles_total{controller=\"provision\",result=\"success\"} 1",
            "sdc_docker_controller_reconciles_total{controller=\"provision\",result=\"panic\"} 1",
            "sdc_docker_controller_reconciles_total{controller=\"provision\",result=\"timeout\"} 0",
            "# TYPE sdc_docker_controller_reconcile_duration_seconds histogram",
            "sdc_docker_controller_reconcile_duration_seconds_bucket{controller=\"provision\",le=\"0.01\"} 0",
            "sdc_docker_controller_reconcile_duration_seconds_bucket{controller=\"provision\",le=\"0.025\"} 1",
            "sdc_docker_controller_reconcile_duration_seconds_bucket{controller=\"provision\",le=\"10\"} 1",
            "sdc_docker_controller_reconcile_duration_seconds_bucket{controller=\"provision\",le=\"+Inf\"} 2",
            "sdc_docker_controller_reconcile_duration_seconds_count{controller=\"provision\"} 2",
            "sdc_docker_controller_backoffs_total{controller=\"provision\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
