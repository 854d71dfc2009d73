//! FsOps' own Prometheus registry, served to the API over the data channel
//! (`Service::metrics`) and merged into its `/metrics`. Every name starts
//! with `revaer_fsops_` (anything else would be dropped by the data server).
//! A registry that cannot be built (never expected: names and labels are
//! constants) disables the metrics and logs why; jobs are unaffected.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// FsOps' metrics. Cheap to update from any thread.
#[derive(Debug)]
pub struct FsopsMetrics {
    families: Option<Families>,
}

#[derive(Debug)]
struct Families {
    registry: Registry,
    steps: IntCounterVec,
    jobs: IntCounterVec,
    duration: HistogramVec,
    bytes: IntCounterVec,
    running: IntGauge,
    queued: IntGauge,
}

impl Families {
    fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let steps = IntCounterVec::new(
            Opts::new(
                "revaer_fsops_steps_total",
                "Pipeline steps run, by step and outcome (done, skipped, failed).",
            ),
            &["step", "outcome"],
        )?;
        let jobs = IntCounterVec::new(
            Opts::new(
                "revaer_fsops_jobs_total",
                "Jobs ended, by outcome (completed, failed, noop, interrupted).",
            ),
            &["outcome"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "revaer_fsops_job_duration_seconds",
                "Wall time of one job run, from start (or resume) to its end.",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0,
            ]),
            &["outcome"],
        )?;
        let bytes = IntCounterVec::new(
            Opts::new(
                "revaer_fsops_bytes_total",
                "Bytes brought into the library, by method (link, copy, rename, extract).",
            ),
            &["method"],
        )?;
        let running = IntGauge::new("revaer_fsops_jobs_running", "Jobs running now.")?;
        let queued = IntGauge::new("revaer_fsops_jobs_queued", "Jobs waiting for a free slot.")?;
        registry.register(Box::new(steps.clone()))?;
        registry.register(Box::new(jobs.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        registry.register(Box::new(running.clone()))?;
        registry.register(Box::new(queued.clone()))?;
        Ok(Self {
            registry,
            steps,
            jobs,
            duration,
            bytes,
            running,
            queued,
        })
    }
}

impl Default for FsopsMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl FsopsMetrics {
    #[must_use]
    pub fn new() -> Self {
        let families = match Families::new() {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::error!(error = %e, "fsops metrics disabled");
                None
            }
        };
        Self { families }
    }

    /// A step ended with `outcome` (`done`, `skipped`, `failed`).
    pub fn step(&self, step: &str, outcome: &str) {
        if let Some(f) = &self.families {
            f.steps.with_label_values(&[step, outcome]).inc();
        }
    }

    /// A job run ended.
    pub fn job(&self, outcome: &str, seconds: f64) {
        if let Some(f) = &self.families {
            f.jobs.with_label_values(&[outcome]).inc();
            let h: Histogram = f.duration.with_label_values(&[outcome]);
            h.observe(seconds);
        }
    }

    /// Bytes brought in by `method`.
    pub fn bytes(&self, method: &str, bytes: u64) {
        if let Some(f) = &self.families {
            f.bytes.with_label_values(&[method]).inc_by(bytes);
        }
    }

    /// Jobs running and waiting, as gauges.
    pub fn running(&self, delta: i64) {
        if let Some(f) = &self.families {
            f.running.add(delta);
        }
    }

    pub fn queued(&self, delta: i64) {
        if let Some(f) = &self.families {
            f.queued.add(delta);
        }
    }

    /// Text exposition (format 0.0.4).
    #[must_use]
    pub fn render(&self) -> String {
        let Some(f) = &self.families else {
            return String::new();
        };
        TextEncoder::new()
            .encode_to_string(&f.registry.gather())
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot encode fsops metrics");
                String::new()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_the_fsops_prefix() {
        let m = FsopsMetrics::new();
        m.step("transfer", "done");
        m.job("completed", 0.2);
        m.bytes("link", 10);
        m.running(1);
        m.queued(0);
        let text = m.render();
        assert!(
            text.contains("revaer_fsops_steps_total{outcome=\"done\",step=\"transfer\"} 1"),
            "{text}"
        );
        assert!(text.contains("revaer_fsops_job_duration_seconds_bucket"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("revaer_fsops_"), "{line}");
        }
        let kept =
            revaer_worker_bootstrap::data_server::own_metrics(revaer_ipc::Role::Fsops, &text);
        assert_eq!(kept, text);
    }
}
