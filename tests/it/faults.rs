//! S3 failing in the ways it does (throttling, connections cut or stalled, an object replaced
//! while it is read), through a fault-injecting proxy: every poll ends with exact totals or a
//! clear failure, never a partial month.

use std::time::{Duration, Instant};

use crate::common::faults::{Fault, FaultProxy, Request};
use crate::common::s3::{S3Server, source_at};
use crate::common::views::*;
use crate::common::*;
use dbr_ingest::domain::Monitored;
use dbr_ingest::failure::FailureKind;
use dbr_ingest::ingest::{PollOutcome, poll};
use dbr_ingest::source::Source;
use dbr_ingest::store::Store;

const BUCKET: &str = "billing";
/// Short, so that a stalled connection is given up quickly here.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

struct Faulty {
    server: S3Server,
    proxy: FaultProxy,
    source: Source,
    db: TestDatabase,
    store: Store,
    dir: tempfile::TempDir,
}

impl Faulty {
    async fn start() -> Faulty {
        let server = S3Server::start().await;
        server.create_bucket(BUCKET).await;
        let proxy = FaultProxy::start(server.address()).await;
        let source = source_at(&proxy.endpoint, BUCKET, "", READ_TIMEOUT).await;
        let db = TestDatabase::new();
        let store = db.store().await;
        Faulty {
            server,
            proxy,
            source,
            db,
            store,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    async fn upload(&self, period: &str, seed: &str, rows: &str) -> Report {
        let r = report(
            self.dir.path(),
            "",
            "111111111111",
            "with-resources-and-tags",
            period,
            &["--seed", seed, "--rows", rows],
        );
        self.server.put(BUCKET, &r.key, r.zip.clone()).await;
        r
    }

    async fn poll(&self) -> PollOutcome {
        poll(
            &self.source,
            &self.store,
            Some(&Monitored::All),
            2,
            &memory_budget(DEFAULT_BUDGET),
        )
        .await
        .unwrap()
    }

    async fn assert_views(&self, reports: &[&Report]) {
        assert_monthly(
            &monthly_costs(self.store.pool()).await,
            &expected_monthly(reports),
        );
    }

    async fn finish(self) {
        self.store.pool().close().await;
        self.db.drop_database().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_down_answers_are_retried() {
    let f = Faulty::start().await;
    let r = f.upload("2018-01", "1", "2000").await;
    f.proxy.inject(Request::List, Fault::SlowDown, 2);
    f.proxy.inject(Request::Get, Fault::SlowDown, 2);
    let outcome = f.poll().await;
    assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    assert_eq!(outcome.ingested.len(), 1);
    assert_eq!(f.proxy.injected(), 4);
    f.assert_views(&[&r]).await;

    // Throttled without end: a clear, transient failure; the month is absent, not partial.
    let changed = f.upload("2018-01", "2", "2000").await;
    f.proxy.inject(Request::Get, Fault::SlowDown, 1000);
    let outcome = f.poll().await;
    assert_eq!(outcome.failed.len(), 1);
    assert_eq!(outcome.failed[0].kind, FailureKind::Transient);
    assert!(
        outcome.failed[0].error.contains("SlowDown"),
        "{}",
        outcome.failed[0].error
    );
    f.assert_views(&[&r]).await;
    f.proxy.stop_faults();
    let outcome = f.poll().await;
    assert_eq!(outcome.ingested.len(), 1, "{:?}", outcome.failed);
    f.assert_views(&[&changed]).await;
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_mid_body_is_read_again() {
    let f = Faulty::start().await;
    let r = f.upload("2018-02", "3", "20000").await;
    assert!(r.zip.len() > 100_000);
    f.proxy.inject(Request::Get, Fault::ResetAfter(60_000), 1);
    let outcome = f.poll().await;
    assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    assert_eq!(f.proxy.injected(), 1);
    f.assert_views(&[&r]).await;
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connection_times_out_and_is_read_again() {
    let f = Faulty::start().await;
    let r = f.upload("2018-03", "4", "20000").await;
    f.proxy.inject(Request::Get, Fault::StallAfter(60_000), 1);
    let started = Instant::now();
    let outcome = f.poll().await;
    assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "gave up on the stall after the read timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(f.proxy.injected(), 1);
    f.assert_views(&[&r]).await;

    // Stalled at every attempt: a clear failure, retried at the next poll.
    let changed = f.upload("2018-03", "5", "20000").await;
    f.proxy.inject(Request::Get, Fault::StallAfter(60_000), 3);
    let outcome = f.poll().await;
    assert_eq!(outcome.failed.len(), 1);
    assert_eq!(outcome.failed[0].kind, FailureKind::Transient);
    f.assert_views(&[&r]).await;
    let outcome = f.poll().await;
    assert_eq!(outcome.ingested.len(), 1, "{:?}", outcome.failed);
    f.assert_views(&[&changed]).await;
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_replaced_while_it_is_read_ends_whole_either_way() {
    let f = Faulty::start().await;
    let old = f.upload("2018-04", "6", "20000").await;
    f.proxy.slow_down(200_000);
    let polling = {
        let (source, store) = (&f.source, &f.store);
        async move {
            poll(
                source,
                store,
                Some(&Monitored::All),
                2,
                &memory_budget(DEFAULT_BUDGET),
            )
            .await
            .unwrap()
        }
    };
    let replacing = async {
        while f.proxy.delivered() < 100_000 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        f.upload("2018-04", "7", "20000").await
    };
    let (outcome, new) = tokio::join!(polling, replacing);
    // The version being read was either read whole (its ETag was pinned) or failed cleanly.
    match (outcome.ingested.len(), outcome.failed.len()) {
        (1, 0) => f.assert_views(&[&old]).await,
        (0, 1) => assert!(monthly_costs(f.store.pool()).await.is_empty()),
        other => panic!("{other:?}: {:?}", outcome.failed),
    }
    // The next poll reads the new version.
    let outcome = f.poll().await;
    assert_eq!(outcome.ingested.len(), 1, "{:?}", outcome.failed);
    f.assert_views(&[&new]).await;
    f.finish().await;
}
