//! The job pipeline: `validate → locate_source → prepare → transfer →
//! extract → flatten → permissions → cleanup → record`.
//!
//! Every step is idempotent: running it again after it finished, or after
//! it was cut short at any point (process killed), leaves the same library.
//! The job's record (`.revaer/<info-hash>.json`, see [`crate::record`]) is
//! written before `prepare` creates anything and after each later step, so a
//! resumed job skips what is done and never redoes a step whose effects a
//! later one changed (a transfer after a flatten). `validate` and
//! `locate_source` only look, so a resumed job reruns them silently for the
//! context they compute. Blocking code: callers run it on a blocking thread.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use revaer_config::MoveMode;
use revaer_ipc::fsops::{FsopsJob, FsopsProgress, FsopsStep, StepOutcome};

use crate::error::{IoContext as _, StepError, StepResult};
use crate::extract::{self, Format};
use crate::metrics::FsopsMetrics;
use crate::plan::{Plan, plan};
use crate::policy::Policy;
use crate::record::{self, JobRecord, RECORD_VERSION, RecordStatus};
use crate::roots::{EntryKind, RESERVED_PREFIX, RelPath, Roots, create_dirs, lstat, walk};
use crate::transfer::{self, FileMove, Method};

/// Where progress frames go (the service fans them out to every client
/// attached to the job).
pub trait Emit {
    fn emit(&mut self, progress: FsopsProgress);
}

impl<F: FnMut(FsopsProgress)> Emit for F {
    fn emit(&mut self, progress: FsopsProgress) {
        self(progress);
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Completed {
        library_path: String,
    },
    /// The record said the job had completed before: nothing was done.
    AlreadyDone {
        library_path: String,
    },
    Failed {
        step: FsopsStep,
        reason: String,
    },
    /// Stopped between steps on request (shutdown, restart); no terminal
    /// frame was sent, so the API resumes it.
    Interrupted {
        before: FsopsStep,
    },
}

impl JobOutcome {
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            JobOutcome::Completed { .. } => "completed",
            JobOutcome::AlreadyDone { .. } => "noop",
            JobOutcome::Failed { .. } => "failed",
            JobOutcome::Interrupted { .. } => "interrupted",
        }
    }
}

/// Everything a job run needs besides the job.
#[derive(Debug)]
pub struct RunEnv<'a> {
    pub policy: &'a Policy,
    /// The downloads dir.
    pub downloads: &'a Path,
    pub metrics: &'a FsopsMetrics,
    /// Set to stop the job at the next step boundary.
    pub stop: &'a AtomicBool,
    /// Test hook: stop as if killed at this point.
    pub crash_at: Option<CrashPoint>,
}

/// Where the test hook [`RunEnv::crash_at`] stops a job: right after
/// `step`'s work, before (`journaled: false`) or after its record update,
/// and always before its `StepFinished` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashPoint {
    pub step: FsopsStep,
    pub journaled: bool,
}

/// Runs (or resumes) `job`, emitting its progress. Sends `Started`, then
/// `StepStarted`/`StepFinished` per step, then exactly one `Completed` or
/// `Failed` — except when interrupted, which sends no terminal frame.
pub fn run_job(job: &FsopsJob, env: &RunEnv<'_>, out: &mut dyn Emit) -> JobOutcome {
    let started = Instant::now();
    let outcome = run_inner(job, env, out);
    let seconds = started.elapsed().as_secs_f64();
    env.metrics.job(outcome.label(), seconds);
    outcome
}

fn run_inner(job: &FsopsJob, env: &RunEnv<'_>, out: &mut dyn Emit) -> JobOutcome {
    let job_id = job.job_id;
    let first = job.resume_at.unwrap_or(FsopsStep::Validate);
    let fail = |out: &mut dyn Emit, step, e: &StepError| failed(env, out, job_id, step, e);
    // Context every step needs: the plan, the roots, the record.
    let context = plan(job, env.policy).and_then(|plan| {
        let roots = Roots::open(env.downloads, &env.policy.library_root)
            .ctx(|| "opening the downloads dir and the library".to_owned())?;
        let record = record::read(&roots.library, &plan.hash)?;
        Ok((plan, roots, record))
    });
    let (plan, roots, record) = match context {
        Ok(c) => c,
        Err(e) => {
            out.emit(FsopsProgress::Started {
                job_id,
                step: first,
            });
            if first == FsopsStep::Validate {
                out.emit(FsopsProgress::StepStarted {
                    job_id,
                    step: FsopsStep::Validate,
                });
            }
            return fail(out, FsopsStep::Validate, &e);
        }
    };
    if let Some(done) = record
        .as_ref()
        .filter(|r| r.status == RecordStatus::Completed)
    {
        out.emit(FsopsProgress::Started {
            job_id,
            step: first,
        });
        out.emit(FsopsProgress::Completed {
            job_id,
            library_path: done.library_path.clone(),
        });
        return JobOutcome::AlreadyDone {
            library_path: done.library_path.clone(),
        };
    }
    // Report from `first`, or earlier if the record shows that a step the
    // API believes done is not (a lost or foreign record: redo from there).
    let report_from = FsopsStep::ALL
        .into_iter()
        .find(|&s| {
            s >= first
                || (s >= FsopsStep::Prepare && !record.as_ref().is_some_and(|r| r.is_done(s)))
        })
        .unwrap_or(FsopsStep::Record);
    out.emit(FsopsProgress::Started {
        job_id,
        step: report_from,
    });
    let mut job_run = JobRun {
        job,
        plan,
        roots,
        record,
        policy: env.policy,
        metrics: env.metrics,
    };
    run_steps(&mut job_run, report_from, env, out)
}

fn failed(
    env: &RunEnv<'_>,
    out: &mut dyn Emit,
    job_id: i64,
    step: FsopsStep,
    e: &StepError,
) -> JobOutcome {
    env.metrics.step(step.as_str(), "failed");
    tracing::warn!(step = step.as_str(), error = %e, "fsops step failed");
    let reason = e.to_string();
    out.emit(FsopsProgress::Failed {
        job_id,
        step,
        reason: reason.clone(),
    });
    JobOutcome::Failed { step, reason }
}

/// Runs every step, reporting those from `report_from` on.
fn run_steps(
    job_run: &mut JobRun<'_>,
    report_from: FsopsStep,
    env: &RunEnv<'_>,
    out: &mut dyn Emit,
) -> JobOutcome {
    let job_id = job_run.job.job_id;
    for step in FsopsStep::ALL {
        if env.stop.load(Ordering::Acquire) {
            return JobOutcome::Interrupted { before: step };
        }
        let reported = step >= report_from;
        if reported {
            out.emit(FsopsProgress::StepStarted { job_id, step });
        }
        let already = job_run.record.as_ref().is_some_and(|r| r.is_done(step));
        let result = if already {
            Ok(StepOutcome::Skipped)
        } else {
            job_run.run_step(step)
        };
        let crash = |journaled| env.crash_at == Some(CrashPoint { step, journaled });
        let outcome = match result {
            Ok(o) => o,
            Err(e) => return failed(env, out, job_id, step, &e),
        };
        if crash(false) {
            return JobOutcome::Interrupted { before: step };
        }
        if let Err(e) = job_run.journal(step) {
            return failed(env, out, job_id, step, &e);
        }
        if crash(true) {
            return JobOutcome::Interrupted { before: step };
        }
        if reported {
            env.metrics.step(step.as_str(), outcome.as_str());
            out.emit(FsopsProgress::StepFinished {
                job_id,
                step,
                outcome,
            });
        }
    }
    let library_path = job_run
        .record
        .as_ref()
        .map(|r| r.library_path.clone())
        .unwrap_or_default();
    out.emit(FsopsProgress::Completed {
        job_id,
        library_path: library_path.clone(),
    });
    JobOutcome::Completed { library_path }
}

/// One run of one job.
struct JobRun<'a> {
    job: &'a FsopsJob,
    plan: Plan,
    roots: Roots,
    record: Option<JobRecord>,
    policy: &'a Policy,
    metrics: &'a FsopsMetrics,
}

impl JobRun<'_> {
    fn run_step(&mut self, step: FsopsStep) -> StepResult<StepOutcome> {
        match step {
            // The plan was made (and checked) before the loop.
            FsopsStep::Validate => Ok(StepOutcome::Done),
            FsopsStep::LocateSource => self.locate_source(),
            FsopsStep::Prepare => self.prepare(),
            FsopsStep::Transfer => self.transfer(),
            FsopsStep::Extract => self.extract(),
            FsopsStep::Flatten => self.flatten(),
            FsopsStep::Permissions => self.permissions(),
            FsopsStep::Cleanup => self.cleanup(),
            FsopsStep::Record => self.finish_record(),
        }
    }

    /// Marks `step` done in the record (from `prepare` on) and writes it.
    fn journal(&mut self, step: FsopsStep) -> StepResult<()> {
        let Some(record) = self.record.as_mut() else {
            return Ok(());
        };
        record.mark_done(step);
        record::write(&self.roots.library, record)
    }

    fn record(&self) -> StepResult<&JobRecord> {
        self.record
            .as_ref()
            .ok_or_else(|| StepError::Conflict("the job's record is missing".to_owned()))
    }

    fn move_mode(&self) -> StepResult<MoveMode> {
        match self.record()?.move_mode.as_str() {
            "hardlink" => Ok(MoveMode::Hardlink),
            "copy" => Ok(MoveMode::Copy),
            "move" => Ok(MoveMode::Move),
            other => Err(StepError::Conflict(format!(
                "record names an unknown move mode `{other}`"
            ))),
        }
    }

    /// Temporary name for file `index` of this job.
    fn tmp_name(&self, what: &str, index: usize) -> String {
        format!("{RESERVED_PREFIX}-{what}-{}-{index}", self.plan.hash)
    }

    fn locate_source(&self) -> StepResult<StepOutcome> {
        let transferred = self
            .record
            .as_ref()
            .is_some_and(|r| r.is_done(FsopsStep::Transfer));
        if transferred {
            return Ok(StepOutcome::Skipped);
        }
        // A resumed `move` may already have moved some files.
        let may_be_moved = self.record.as_ref().is_some_and(|r| r.move_mode == "move");
        for file in &self.plan.files {
            let src = self.plan.source_of(file);
            match lstat(&self.roots.downloads, &src).ctx(|| format!("inspecting {src}"))? {
                Some(meta) if meta.is_file() && meta.len() == file.size => {}
                Some(meta) if meta.is_file() => {
                    return Err(StepError::Source(format!(
                        "{src} has {} bytes, the torrent says {}",
                        meta.len(),
                        file.size
                    )));
                }
                Some(_) => return Err(StepError::Source(format!("{src} is not a regular file"))),
                None if may_be_moved => {}
                None => return Err(StepError::Source(format!("{src} is missing"))),
            }
        }
        Ok(StepOutcome::Done)
    }

    fn prepare(&mut self) -> StepResult<StepOutcome> {
        let library = &self.roots.library;
        if self.record.is_none() {
            let item = self.plan.item();
            let mut taken = vec![item.clone()];
            if self.plan.single_file
                && self.policy.extract
                && let Some((format, stem)) = extract::detect(&self.plan.name)
                && format != Format::Rar
            {
                taken.push(self.unpack_folder(&self.plan.dest_parent, stem)?);
            }
            for path in taken {
                if lstat(library, &path)
                    .ctx(|| format!("inspecting {path}"))?
                    .is_some()
                {
                    return Err(StepError::Conflict(format!(
                        "the library already has {path}, which this torrent did not create"
                    )));
                }
            }
            self.check_space()?;
            let record = JobRecord {
                version: RECORD_VERSION,
                torrent: self.plan.hash.clone(),
                job_id: self.job.job_id,
                name: self.plan.name.clone(),
                dest_parent: self.plan.dest_parent.display(),
                library_path: item.display(),
                move_mode: self.policy.move_mode.as_str().to_owned(),
                status: RecordStatus::InProgress,
                done: Vec::new(),
                created_dirs: Vec::new(),
                started_unix_ms: record::now_ms(),
                finished_unix_ms: None,
            };
            record::write(library, &record)?;
            self.record = Some(record);
        }
        // Category folders: journal each before creating it, so that
        // `permissions` knows which ones are ours to open up.
        let dest_parent = self.record()?.dest_parent()?;
        let mut partial = RelPath::root();
        for component in dest_parent.as_path().components() {
            partial = RelPath::from_path(&partial.as_path().join(component))
                .map_err(StepError::Conflict)?;
            if lstat(library, &partial)
                .ctx(|| format!("inspecting {partial}"))?
                .is_none()
            {
                if let Some(record) = self.record.as_mut() {
                    let text = partial.display();
                    if !record.created_dirs.contains(&text) {
                        record.created_dirs.push(text);
                        record::write(library, record)?;
                    }
                }
                create_dirs(library, &partial).ctx(|| format!("creating {partial}"))?;
            }
        }
        if !self.plan.single_file {
            let item = dest_parent
                .join(&RelPath::parse_non_empty(&self.plan.name).map_err(StepError::InvalidJob)?);
            create_dirs(library, &item).ctx(|| format!("creating {item}"))?;
        }
        Ok(StepOutcome::Done)
    }

    /// Copies need room: refuse early rather than fill the disk.
    fn check_space(&self) -> StepResult<()> {
        use cap_std::fs::MetadataExt as _;
        let library_dev = self
            .roots
            .library
            .dir_metadata()
            .ctx(|| "inspecting the library".to_owned())?
            .dev();
        let copies = self.policy.move_mode == MoveMode::Copy
            || self.plan.files.iter().any(|f| {
                lstat(&self.roots.downloads, &self.plan.source_of(f))
                    .ok()
                    .flatten()
                    .is_some_and(|m| m.dev() != library_dev)
            });
        if !copies {
            return Ok(());
        }
        let stat = nix::sys::statvfs::fstatvfs(&self.roots.library)
            .map_err(|e| StepError::io("reading the library's free space", e.into()))?;
        let available = stat.blocks_available().saturating_mul(stat.fragment_size());
        if available < self.plan.total_bytes {
            return Err(StepError::NoSpace {
                needed: self.plan.total_bytes,
                available,
            });
        }
        Ok(())
    }

    fn transfer(&mut self) -> StepResult<StepOutcome> {
        let mode = self.move_mode()?;
        let dest_parent = self.record()?.dest_parent()?;
        let mut dirs = std::collections::BTreeSet::new();
        for (index, file) in self.plan.files.iter().enumerate() {
            let src = self.plan.source_of(file);
            let dst = self.plan.dest_of(&dest_parent, file);
            let parent = dst.parent();
            if dirs.insert(parent.clone()) {
                create_dirs(&self.roots.library, &parent).ctx(|| format!("creating {parent}"))?;
            }
            let tmp = self.tmp_name("part", index);
            let method = transfer::transfer_file(
                &FileMove {
                    downloads: &self.roots.downloads,
                    library: &self.roots.library,
                    src: &src,
                    dst: &dst,
                    size: file.size,
                    tmp_name: &tmp,
                },
                mode,
            )?;
            if method != Method::AlreadyThere {
                self.metrics.bytes(method.as_str(), file.size);
            }
        }
        for dir in &dirs {
            crate::roots::sync_dir(&self.roots.library, dir).ctx(|| format!("syncing {dir}"))?;
        }
        if mode == MoveMode::Move && !self.plan.single_file {
            let top = self
                .plan
                .save_dir
                .join(&RelPath::parse_non_empty(&self.plan.name).map_err(StepError::InvalidJob)?);
            transfer::remove_empty_dirs(&self.roots.downloads, &top);
        }
        Ok(StepOutcome::Done)
    }

    fn extract(&mut self) -> StepResult<StepOutcome> {
        if !self.policy.extract {
            return Ok(StepOutcome::Skipped);
        }
        let dest_parent = self.record()?.dest_parent()?;
        let mut extracted = 0_u32;
        let archives: Vec<_> = self
            .plan
            .files
            .iter()
            .filter_map(|f| {
                let name = f.rel.file_name();
                extract::detect(&name).map(|(format, stem)| (f.clone(), format, stem.to_owned()))
            })
            .collect();
        for (index, (file, format, stem)) in archives.into_iter().enumerate() {
            let archive = self.plan.dest_of(&dest_parent, &file);
            if format == Format::Rar {
                tracing::warn!(archive = %archive, "RAR archives are not unpacked (ADR 007); left as is");
                continue;
            }
            let target = if self.plan.single_file {
                self.unpack_folder(&dest_parent, &stem)?
            } else {
                archive.parent()
            };
            let present = lstat(&self.roots.library, &archive)
                .ctx(|| format!("inspecting {archive}"))?
                .is_some();
            // A single archive's folder is what the job reports, also when
            // an earlier attempt already unpacked and removed the archive.
            if self.plan.single_file
                && (present
                    || lstat(&self.roots.library, &target)
                        .ctx(|| format!("inspecting {target}"))?
                        .is_some_and(|m| m.is_dir()))
                && let Some(record) = self.record.as_mut()
            {
                record.library_path = target.display();
            }
            if !present {
                continue; // unpacked and removed by an earlier attempt
            }
            let report = extract::extract(
                &self.roots.library,
                &archive,
                format,
                &target,
                self.policy.caps,
                &self.tmp_name("unpack", index),
            )?;
            tracing::info!(archive = %archive, entries = report.entries, bytes = report.bytes,
                already_there = report.already_there, links_skipped = report.links_skipped, "archive unpacked");
            self.metrics.bytes("extract", report.bytes);
            if !self.policy.keep_archives {
                self.roots
                    .library
                    .remove_file(archive.as_path())
                    .ctx(|| format!("removing unpacked {archive}"))?;
            }
            extracted += 1;
        }
        Ok(if extracted > 0 {
            StepOutcome::Done
        } else {
            StepOutcome::Skipped
        })
    }

    /// Where a single-file torrent's archive (name without suffix: `stem`)
    /// is unpacked: a folder of that name beside it.
    fn unpack_folder(&self, dest_parent: &RelPath, stem: &str) -> StepResult<RelPath> {
        let stem = if stem.is_empty() || stem.starts_with(RESERVED_PREFIX) {
            format!("{}.unpacked", self.plan.name)
        } else {
            stem.to_owned()
        };
        dest_parent
            .child(&stem)
            .map_err(|e| StepError::InvalidJob(format!("archive name: {e}")))
    }

    /// The job's library folder, or `None` when the job's result is a
    /// single file.
    fn item_dir(&self) -> StepResult<Option<RelPath>> {
        let path = self.record()?.library_path()?;
        let meta = lstat(&self.roots.library, &path).ctx(|| format!("inspecting {path}"))?;
        Ok(meta.filter(cap_std::fs::Metadata::is_dir).map(|_| path))
    }

    fn flatten(&mut self) -> StepResult<StepOutcome> {
        if !self.policy.flatten {
            return Ok(StepOutcome::Skipped);
        }
        let Some(item) = self.item_dir()? else {
            return Ok(StepOutcome::Skipped);
        };
        let library = &self.roots.library;
        let staging = item
            .child(&format!("{RESERVED_PREFIX}-flatten"))
            .map_err(StepError::Conflict)?;
        let mut flattened = false;
        for _ in 0..8 {
            if lstat(library, &staging)
                .ctx(|| format!("inspecting {staging}"))?
                .is_none()
            {
                let entries = list(library, &item)?;
                let [only] = entries.as_slice() else { break };
                let only = item.child(only).map_err(StepError::Conflict)?;
                let is_dir = lstat(library, &only)
                    .ctx(|| format!("inspecting {only}"))?
                    .is_some_and(|m| m.is_dir());
                if !is_dir {
                    break;
                }
                // Rename first: the folder's own name may recur inside it.
                library
                    .rename(only.as_path(), library, staging.as_path())
                    .ctx(|| format!("flattening {only}"))?;
            }
            for name in list(library, &staging)? {
                let from = staging.child(&name).map_err(StepError::Conflict)?;
                let to = item.child(&name).map_err(StepError::Conflict)?;
                library
                    .rename(from.as_path(), library, to.as_path())
                    .ctx(|| format!("flattening {from}"))?;
            }
            library
                .remove_dir(staging.as_path())
                .ctx(|| format!("removing {staging}"))?;
            flattened = true;
        }
        Ok(if flattened {
            StepOutcome::Done
        } else {
            StepOutcome::Skipped
        })
    }

    fn permissions(&mut self) -> StepResult<StepOutcome> {
        let library = &self.roots.library;
        let policy = self.policy;
        let record = self.record()?;
        for dir in &record.created_dirs {
            let dir = RelPath::parse(dir).map_err(StepError::Conflict)?;
            if lstat(library, &dir)
                .ctx(|| format!("inspecting {dir}"))?
                .is_some_and(|m| m.is_dir())
            {
                transfer::set_mode(library, &dir, policy.dir_mode())
                    .ctx(|| format!("setting the mode of {dir}"))?;
            }
        }
        let top = record.library_path()?;
        let Some(meta) = lstat(library, &top).ctx(|| format!("inspecting {top}"))? else {
            return Err(StepError::Conflict(format!(
                "{top} vanished from the library"
            )));
        };
        if meta.is_file() {
            set_file(library, &top, policy)?;
            return Ok(StepOutcome::Done);
        }
        transfer::set_mode(library, &top, policy.dir_mode())
            .ctx(|| format!("setting the mode of {top}"))?;
        for entry in walk(library, &top, true).ctx(|| format!("listing {top}"))? {
            let path = top.join(&entry.path);
            match entry.kind {
                EntryKind::File => set_file(library, &path, policy)?,
                EntryKind::Dir => transfer::set_mode(library, &path, policy.dir_mode())
                    .ctx(|| format!("setting the mode of {path}"))?,
                EntryKind::Symlink | EntryKind::Other => {}
            }
        }
        Ok(StepOutcome::Done)
    }

    fn cleanup(&mut self) -> StepResult<StepOutcome> {
        let Some(item) = self.item_dir()? else {
            return Ok(StepOutcome::Skipped);
        };
        let library = &self.roots.library;
        let entries = walk(library, &item, true).ctx(|| format!("listing {item}"))?;
        let mut removed = 0_u64;
        for entry in &entries {
            if entry.kind == EntryKind::File
                && self.policy.cleanup.drops(&entry.path.display(), entry.size)
            {
                let path = item.join(&entry.path);
                library
                    .remove_file(path.as_path())
                    .ctx(|| format!("removing {path}"))?;
                removed += 1;
            }
        }
        // Folders emptied by the removals (deepest first).
        if removed > 0 {
            for entry in entries.iter().rev() {
                if entry.kind == EntryKind::Dir {
                    let _ = library.remove_dir(item.join(&entry.path).as_path());
                }
            }
        }
        // Folders are handed over last: FsOps holds no CAP_DAC_OVERRIDE, so
        // once a folder belongs to someone else it could not remove junk
        // from it any more.
        if self.policy.chown() {
            chown_path(library, &item, self.policy)?;
            for entry in walk(library, &item, true).ctx(|| format!("listing {item}"))? {
                if entry.kind == EntryKind::Dir {
                    chown_path(library, &item.join(&entry.path), self.policy)?;
                }
            }
        }
        Ok(if removed > 0 || self.policy.chown() {
            StepOutcome::Done
        } else {
            StepOutcome::Skipped
        })
    }

    fn finish_record(&mut self) -> StepResult<StepOutcome> {
        let Some(record) = self.record.as_mut() else {
            return Err(StepError::Conflict(
                "the job's record is missing".to_owned(),
            ));
        };
        record.status = RecordStatus::Completed;
        record.finished_unix_ms = Some(record::now_ms());
        Ok(StepOutcome::Done)
    }
}

/// Names in a folder, FsOps' own reserved names excluded except the
/// flatten staging folder is listed by the caller explicitly.
fn list(dir: &cap_std::fs::Dir, path: &RelPath) -> StepResult<Vec<String>> {
    let mut names = Vec::new();
    for entry in dir
        .read_dir(path.for_open())
        .ctx(|| format!("listing {path}"))?
    {
        let entry = entry.ctx(|| format!("listing {path}"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(RESERVED_PREFIX) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Mode (and owner) of one library file, through a handle opened without
/// following symlinks.
fn set_file(library: &cap_std::fs::Dir, path: &RelPath, policy: &Policy) -> StepResult<()> {
    use cap_std::fs::PermissionsExt as _;
    let file = crate::roots::open_file_nofollow(library, path).ctx(|| format!("opening {path}"))?;
    let current = file
        .metadata()
        .ctx(|| format!("inspecting {path}"))?
        .permissions()
        .mode();
    let file = file.into_std();
    if policy.chown() {
        std::os::unix::fs::fchown(&file, policy.owner, policy.group)
            .ctx(|| format!("changing the owner of {path}"))?;
    }
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(
        policy.file_mode_for(current),
    ))
    .ctx(|| format!("setting the mode of {path}"))
}

/// Owner of one library folder.
fn chown_path(library: &cap_std::fs::Dir, path: &RelPath, policy: &Policy) -> StepResult<()> {
    let dir = library
        .open_dir(path.for_open())
        .ctx(|| format!("opening {path}"))?
        .into_std_file();
    std::os::unix::fs::fchown(&dir, policy.owner, policy.group)
        .ctx(|| format!("changing the owner of {path}"))
}
