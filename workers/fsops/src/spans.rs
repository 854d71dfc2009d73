//! The job's trace spans, recorded here and exported by the API (ADR 008).
//!
//! FsOps' sandbox refuses network sockets, so it cannot talk to a
//! collector. Instead [`SpanRecorder`] watches the progress frames a job
//! emits and, just before the terminal frame (`Completed` or `Failed`),
//! sends one [`FsopsProgress::Spans`] frame: a `fsops job` span, a child of
//! the job's `traceparent` (the engine's download span), and one
//! `fsops <step>` child per step that ran. Untraced or unsampled jobs
//! record nothing.

use std::time::{SystemTime, UNIX_EPOCH};

use revaer_ipc::fsops::{FsopsProgress, FsopsStep};
use revaer_ipc::trace::{MAX_RELAYED_SPANS, SpanRecord, TraceParent};

use crate::pipeline::Emit;

/// Wraps an [`Emit`], adding the job's spans before its end.
#[derive(Debug)]
pub struct SpanRecorder<E> {
    inner: E,
    trace: Option<Trace>,
}

#[derive(Debug)]
struct Trace {
    parent: TraceParent,
    job_span: [u8; 8],
    job_started: u64,
    attributes: Vec<(String, String)>,
    /// The step running now and when it started.
    current: Option<(FsopsStep, u64)>,
    steps: Vec<SpanRecord>,
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A random, non-zero span id.
fn new_span_id() -> [u8; 8] {
    let mut id = [0_u8; 8];
    if getrandom::fill(&mut id).is_err() || id == [0; 8] {
        // Unique enough within one trace; zero is invalid.
        id = now_nanos().to_be_bytes();
        id[7] |= 1;
    }
    id
}

impl<E: Emit> SpanRecorder<E> {
    /// Records spans when `traceparent` is valid and sampled; otherwise
    /// forwards frames untouched.
    pub fn new(inner: E, traceparent: Option<&str>, attributes: Vec<(String, String)>) -> Self {
        let trace = traceparent
            .and_then(TraceParent::parse)
            .filter(TraceParent::sampled)
            .map(|parent| Trace {
                parent,
                job_span: new_span_id(),
                job_started: now_nanos(),
                attributes,
                current: None,
                steps: Vec::new(),
            });
        Self { inner, trace }
    }

    fn step_span(trace: &mut Trace, step: FsopsStep, started: u64, outcome: &str) {
        // One slot stays free for the job span.
        if trace.steps.len() + 1 >= MAX_RELAYED_SPANS {
            return;
        }
        trace.steps.push(SpanRecord {
            name: format!("fsops {}", step.as_str()),
            trace_id: trace.parent.trace_id,
            span_id: new_span_id(),
            parent_span_id: trace.job_span,
            parent_is_remote: false,
            start_unix_nanos: started,
            end_unix_nanos: now_nanos(),
            attributes: vec![("revaer.fsops.outcome".to_owned(), outcome.to_owned())],
            error: None,
        });
    }

    fn finish(trace: &mut Trace, error: Option<String>) -> Vec<SpanRecord> {
        if let Some((step, started)) = trace.current.take() {
            Self::step_span(trace, step, started, "failed");
            if let Some(last) = trace.steps.last_mut() {
                last.error.clone_from(&error);
            }
        }
        let mut spans = std::mem::take(&mut trace.steps);
        spans.push(SpanRecord {
            name: "fsops job".to_owned(),
            trace_id: trace.parent.trace_id,
            span_id: trace.job_span,
            parent_span_id: trace.parent.span_id,
            parent_is_remote: true,
            start_unix_nanos: trace.job_started,
            end_unix_nanos: now_nanos(),
            attributes: trace.attributes.clone(),
            error,
        });
        spans
    }
}

impl<E: Emit> Emit for SpanRecorder<E> {
    fn emit(&mut self, progress: FsopsProgress) {
        if let Some(trace) = &mut self.trace {
            match &progress {
                FsopsProgress::StepStarted { step, .. } => {
                    trace.current = Some((*step, now_nanos()));
                }
                FsopsProgress::StepFinished { step, outcome, .. } => {
                    let started = match trace.current.take() {
                        Some((s, at)) if s == *step => at,
                        _ => now_nanos(),
                    };
                    Self::step_span(trace, *step, started, outcome.as_str());
                }
                FsopsProgress::Completed { .. } => {
                    let spans = Self::finish(trace, None);
                    self.trace = None;
                    self.inner.emit(FsopsProgress::Spans(spans));
                }
                FsopsProgress::Failed { reason, .. } => {
                    let spans = Self::finish(trace, Some(reason.clone()));
                    self.trace = None;
                    self.inner.emit(FsopsProgress::Spans(spans));
                }
                FsopsProgress::Started { .. } | FsopsProgress::Spans(_) => {}
            }
        }
        self.inner.emit(progress);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use revaer_ipc::fsops::StepOutcome;

    const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn run(traceparent: Option<&str>, fail: bool) -> Vec<FsopsProgress> {
        let mut out = Vec::new();
        {
            let mut rec = SpanRecorder::new(
                |p| out.push(p),
                traceparent,
                vec![("revaer.torrent".to_owned(), "t".to_owned())],
            );
            rec.emit(FsopsProgress::Started {
                job_id: 1,
                step: FsopsStep::Validate,
            });
            rec.emit(FsopsProgress::StepStarted {
                job_id: 1,
                step: FsopsStep::Validate,
            });
            rec.emit(FsopsProgress::StepFinished {
                job_id: 1,
                step: FsopsStep::Validate,
                outcome: StepOutcome::Done,
            });
            rec.emit(FsopsProgress::StepStarted {
                job_id: 1,
                step: FsopsStep::Transfer,
            });
            if fail {
                rec.emit(FsopsProgress::Failed {
                    job_id: 1,
                    step: FsopsStep::Transfer,
                    reason: "disk full".to_owned(),
                });
            } else {
                rec.emit(FsopsProgress::StepFinished {
                    job_id: 1,
                    step: FsopsStep::Transfer,
                    outcome: StepOutcome::Done,
                });
                rec.emit(FsopsProgress::Completed {
                    job_id: 1,
                    library_path: "x".to_owned(),
                });
            }
        }
        out
    }

    #[test]
    fn a_traced_job_sends_its_spans_just_before_its_end() {
        let out = run(Some(SAMPLED), false);
        assert_eq!(out.len(), 7);
        let FsopsProgress::Spans(spans) = &out[5] else {
            panic!("expected spans before the end, got {:?}", out[5]);
        };
        assert!(matches!(out[6], FsopsProgress::Completed { .. }));
        let parent = TraceParent::parse(SAMPLED).unwrap();
        let job = spans.last().unwrap();
        assert_eq!(job.name, "fsops job");
        assert_eq!(job.parent_span_id, parent.span_id);
        assert!(job.parent_is_remote);
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["fsops validate", "fsops transfer", "fsops job"]);
        for step in &spans[..2] {
            assert_eq!(step.trace_id, parent.trace_id);
            assert_eq!(step.parent_span_id, job.span_id);
            assert!(!step.parent_is_remote);
            assert!(step.start_unix_nanos <= step.end_unix_nanos);
            assert!(job.start_unix_nanos <= step.start_unix_nanos);
        }
        assert_ne!(spans[0].span_id, spans[1].span_id);
    }

    #[test]
    fn a_failed_step_and_the_job_carry_the_reason() {
        let out = run(Some(SAMPLED), true);
        let FsopsProgress::Spans(spans) = &out[4] else {
            panic!("expected spans, got {:?}", out[4]);
        };
        assert_eq!(spans.len(), 3);
        assert_eq!(spans[1].name, "fsops transfer");
        assert_eq!(spans[1].error.as_deref(), Some("disk full"));
        assert_eq!(spans[2].error.as_deref(), Some("disk full"));
    }

    #[test]
    fn untraced_or_unsampled_jobs_send_no_spans() {
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        for tp in [None, Some(unsampled), Some("junk")] {
            let out = run(tp, false);
            assert_eq!(out.len(), 6);
            assert!(!out.iter().any(|p| matches!(p, FsopsProgress::Spans(_))));
        }
    }
}
