//! The FsOps service: the streaming contract over a real data socket
//! (handshake, codec, one job per connection), attaching to a running job,
//! jobs that outlive their client, and config pushes (invalid ones refused
//! with the old policy kept, sandbox-shaping ones answered by a restart).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines,
    reason = "tests"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Fixture, noise};
use revaer_config::{Config, FsopsConfig, MoveMode};
use revaer_fsops::FsopsService;
use revaer_ipc::fsops::{FsopsProgress, FsopsRequest, FsopsStep};
use revaer_ipc::handshake::{HandshakeParams, client_handshake};
use revaer_ipc::{BootSecret, Connection, Envelope, Role, WorkerRequest, WorkerResponse};
use revaer_worker_bootstrap::data_server::{Service, spawn_data_server};

const WAIT: Duration = Duration::from_secs(60);

async fn connect(
    socket: &std::path::Path,
    secret: &BootSecret,
) -> Connection<revaer_ipc::transport::Stream> {
    let stream = revaer_ipc::transport::connect(socket).await.unwrap();
    let mut conn = Connection::new(stream);
    client_handshake(
        &mut conn,
        &HandshakeParams {
            role: Role::Api,
            peer_role: Role::Fsops,
            build_id: &revaer_ipc::build_info::build_id(),
            secret,
            timeout: Duration::from_secs(5),
        },
    )
    .await
    .unwrap();
    conn
}

/// Sends one job and reads its progress until FsOps closes the stream.
async fn run_over_socket(
    socket: &std::path::Path,
    secret: &BootSecret,
    job: &revaer_ipc::fsops::FsopsJob,
) -> Vec<FsopsProgress> {
    let mut conn = connect(socket, secret).await;
    conn.send(&Envelope {
        request_id: 77,
        traceparent: job.traceparent.clone(),
        body: WorkerRequest::Fsops(FsopsRequest::Run(Box::new(job.clone()))),
    })
    .await
    .unwrap();
    let mut frames = Vec::new();
    while let Some(reply) = tokio::time::timeout(WAIT, conn.recv::<Envelope<WorkerResponse>>())
        .await
        .unwrap()
        .unwrap()
    {
        assert_eq!(reply.request_id, 77);
        match reply.body {
            WorkerResponse::Fsops(p) => frames.push(p),
            other => panic!("unexpected {other:?}"),
        }
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_streams_over_the_real_socket() {
    let fx = Fixture::new();
    fx.write("Show/e01.mkv", &noise(50_000, 1));
    let job = fx.job(1, "", "Show");
    let service = Arc::new(FsopsService::with_chown(&fx.layout, &fx.config, true));
    let socket = fx.tmp.path().join("fsops.sock");
    let secret = BootSecret::from_bytes([7; 32]);
    let server =
        spawn_data_server(&socket, Role::Fsops, secret.clone(), Arc::clone(&service)).unwrap();

    let frames = run_over_socket(&socket, &secret, &job).await;
    assert_eq!(
        frames.first(),
        Some(&FsopsProgress::Started {
            job_id: 1,
            step: FsopsStep::Validate
        })
    );
    // Started, 9 × (StepStarted, StepFinished), the job's spans (it is
    // traced), Completed.
    assert_eq!(frames.len(), 21, "{frames:#?}");
    let FsopsProgress::Spans(spans) = &frames[19] else {
        panic!("the spans must come just before the end: {frames:#?}");
    };
    assert_eq!(spans.len(), 10, "one span per step and the job's");
    assert_eq!(spans.last().unwrap().name, "fsops job");
    assert_eq!(
        frames.last(),
        Some(&FsopsProgress::Completed {
            job_id: 1,
            library_path: "Show".into()
        })
    );
    assert!(fx.library().join("Show/e01.mkv").is_file());

    // Re-running a finished job is a no-op.
    let mut again = run_over_socket(&socket, &secret, &job).await;
    assert!(matches!(&again[1], FsopsProgress::Spans(s) if s.len() == 1));
    again.remove(1);
    assert_eq!(
        again,
        [
            FsopsProgress::Started {
                job_id: 1,
                step: FsopsStep::Validate
            },
            FsopsProgress::Completed {
                job_id: 1,
                library_path: "Show".into()
            },
        ]
    );

    // The worker's metrics travel the same socket.
    let mut conn = connect(&socket, &secret).await;
    conn.send(&Envelope {
        request_id: 1,
        traceparent: None,
        body: WorkerRequest::Metrics,
    })
    .await
    .unwrap();
    let reply: Envelope<WorkerResponse> = conn.recv_timeout(WAIT).await.unwrap();
    let WorkerResponse::Metrics(text) = reply.body else {
        panic!("{:?}", reply.body)
    };
    assert!(
        text.contains("revaer_fsops_steps_total{outcome=\"done\",step=\"record\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("revaer_fsops_jobs_total{outcome=\"noop\"} 1"),
        "{text}"
    );
    server.abort();
}

#[tokio::test]
async fn a_second_run_attaches_and_a_dropped_client_does_not_stop_the_job() {
    let fx = Fixture::new();
    fx.write("Show/e01.mkv", &noise(20_000, 2));
    let job = fx.job(2, "", "Show");
    let service = FsopsService::with_chown(&fx.layout, &fx.config, true);
    // Current-thread runtime: the job task cannot run before we yield, so
    // the second and third requests find it queued.
    let first = service.start(job.clone());
    let mut retry = job.clone();
    retry.job_id = 3;
    let mut second = service.start(retry);
    drop(first); // the API went away
    let mut third = service.start(job.clone());
    assert_eq!(service.active(), 1, "one run per torrent");
    let mut frames = Vec::new();
    while let Some(p) = tokio::time::timeout(WAIT, second.recv()).await.unwrap() {
        frames.push(p);
    }
    assert_eq!(frames.len(), 21);
    assert!(matches!(frames[19], FsopsProgress::Spans(_)));
    assert_eq!(
        frames.last(),
        Some(&FsopsProgress::Completed {
            job_id: 3,
            library_path: "Show".into()
        })
    );
    let mut count = 0;
    while let Some(p) = tokio::time::timeout(WAIT, third.recv()).await.unwrap() {
        assert!(matches!(p, FsopsProgress::Started { job_id: 2, .. }) || count > 0);
        count += 1;
    }
    assert_eq!(count, 21);
    assert!(service.idle(WAIT).await);
    let metrics = service.metrics();
    assert!(
        metrics.contains("revaer_fsops_jobs_total{outcome=\"completed\"} 1"),
        "{metrics}"
    );

    // A job nobody listens to still finishes.
    fx.write("Other/x.mkv", b"x");
    drop(service.start(fx.job(4, "", "Other")));
    assert!(service.idle(WAIT).await);
    assert!(fx.library().join("Other/x.mkv").is_file());
    let record = fx
        .library()
        .join(format!(".revaer/{}.json", fx.job(4, "", "Other").torrent));
    assert!(
        std::fs::read_to_string(record)
            .unwrap()
            .contains("completed")
    );
}

#[tokio::test]
async fn invalid_policy_is_refused_and_the_old_one_kept() {
    let fx = Fixture::new();
    let service = FsopsService::with_chown(&fx.layout, &fx.config, true);
    let bad = FsopsConfig {
        move_mode: MoveMode::Copy,
        cleanup_drop: vec!["a{b".into()],
        ..FsopsConfig::default()
    };
    let err = service.apply_fsops_config(&bad).unwrap_err();
    assert!(err.contains("cleanup_drop"), "{err}");
    assert_eq!(service.policy().unwrap().move_mode, MoveMode::Hardlink);
    let bad = FsopsConfig {
        chmod_file: Some("0000".into()),
        ..FsopsConfig::default()
    };
    assert!(
        service
            .apply_fsops_config(&bad)
            .unwrap_err()
            .contains("chmod_file")
    );
    // A valid change applies live.
    let good = FsopsConfig {
        move_mode: MoveMode::Copy,
        ..FsopsConfig::default()
    };
    assert_eq!(service.apply_fsops_config(&good), Ok(false));
    assert_eq!(service.policy().unwrap().move_mode, MoveMode::Copy);

    // A policy that is invalid at start makes jobs fail with the reason.
    let config = FsopsConfig {
        owner: Some(1000),
        ..FsopsConfig::default()
    };
    let service = FsopsService::with_chown(&fx.layout, &config, false);
    fx.write("Show/a.mkv", b"a");
    let mut rx = service.start(fx.job(5, "", "Show"));
    let mut last = None;
    while let Some(p) = rx.recv().await {
        last = Some(p);
    }
    let Some(FsopsProgress::Failed { step, reason, .. }) = last else {
        panic!("{last:?}")
    };
    assert_eq!(step, FsopsStep::Validate);
    assert!(reason.contains("CAP_CHOWN"), "{reason}");
}

#[tokio::test]
async fn moving_the_library_asks_for_a_restart() {
    let fx = Fixture::new();
    let service = FsopsService::with_chown(&fx.layout, &fx.config, true);
    let other = fx.tmp.path().join("elsewhere");
    let mut config = Config::default();
    config.fsops.library_root = Some(other);
    assert_eq!(service.apply_fsops_config(&config.fsops), Ok(true));
    // Through the Service trait (what the control loop calls): the restart
    // is requested, and new jobs are no longer started.
    service.apply_config(&config).await;
    tokio::time::timeout(WAIT, service.restart_requested())
        .await
        .unwrap();
    fx.write("Show/a.mkv", b"a");
    let mut rx = service.start(fx.job(6, "", "Show"));
    assert_eq!(
        rx.recv().await,
        None,
        "closed without frames: the API resumes it later"
    );
    assert!(service.drain(WAIT).await);
}
