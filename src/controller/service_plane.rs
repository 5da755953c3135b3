//! The service plane: the endpoints controller (Endpoints and
//! EndpointSlices from the pods and Services) and every node's proxy twin
//! (its `ip netlab` table from the Services and their endpoints), run by
//! one task of the lab's process that wakes on the store's commits.
//!
//! It is apart from the lab's loop (`daemon.rs`) so that a change to
//! Services or endpoints never waits for what that loop is doing (starting
//! containers, restarting them, listing them): a pod deletion leaves every
//! node's rules in the time of one refresh, one commit and one sync.
//!
//! The two loops are one pipeline rather than two tasks: the rules follow
//! the endpoints the same pass computed, so when this task has acted on a
//! revision, both Endpoints and rules reflect it (what
//! [`settled`](super::settled) reports and netlab's verbs wait for). Each
//! still owns one thing: only the endpoints controller writes Endpoints
//! and EndpointSlices, only the proxy twins write the nodes' tables.

use super::settled::{Part, Progress};
use super::{policies, proxier, ControllerError};
use crate::cluster::services::Memo;
use crate::store::ObjectStore;
use std::time::Instant;

/// Runs the service plane until the lab is gone, on a thread of its own:
/// its work (a refresh, a sync) never waits for the lab's loop to reach an
/// `await`, and the two use both of a small machine's cores.
pub fn spawn(lab: &str, store: ObjectStore, progress: Progress) {
    let lab = lab.to_string();
    let run = move || {
        // Ahead of the lab's loop, the API's reads and the container
        // starts it competes with on a small machine: a deletion's rules
        // should not wait for its replacement pod's start. (It is idle but
        // for a few ms per change.)
        // SAFETY: setpriority on this thread only.
        unsafe {
            let tid = libc::gettid() as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, -10);
        }
        // Two threads: the nodes' rules are synced side by side.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("service-plane")
            .on_thread_start(|| {
                // SAFETY: setpriority on this thread only.
                unsafe {
                    let tid = libc::gettid() as libc::id_t;
                    libc::setpriority(libc::PRIO_PROCESS, tid, -10);
                }
            })
            .enable_all()
            .build()
            .expect("a runtime for the service plane");
        rt.block_on(run(&lab, &store, &progress));
    };
    std::thread::Builder::new()
        .name("service-plane".into())
        .spawn(run)
        .expect("a thread for the service plane");
}

async fn run(lab: &str, store: &ObjectStore, progress: &Progress) {
    let mut changes = store.subscribe();
    let mut plane = Plane::default();
    loop {
        let begun = changes.borrow_and_update().revision;
        if !crate::store::exists(lab) {
            return;
        }
        match plane.step(lab, store).await {
            Ok(committed) => progress.reached(Part::Services, begun.max(committed)),
            Err(e) => {
                tracing::warn!(lab, error = %e, "service plane step failed");
                progress.failed(Part::Services, begun, e.to_string());
            }
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// What the plane keeps between its steps.
#[derive(Default)]
struct Plane {
    /// The inputs of the last endpoints refresh (see [`Memo`]).
    memo: Memo,
    /// The nodes' proxy twins.
    proxy: proxier::Twins,
    /// The nodes' network policy rules.
    policies: policies::Twin,
}

impl Plane {
    /// Brings Endpoints, EndpointSlices and every node's rules up to the
    /// state now. Returns the revision it committed, if it committed and
    /// nobody else did meanwhile (that revision is then acted on too).
    async fn step(&mut self, lab: &str, store: &ObjectStore) -> Result<u64, ControllerError> {
        let t0 = Instant::now();
        let mut st = store.begin();
        st.endpoints_memo = std::mem::take(&mut self.memo);
        let changed = st.refresh_endpoints();
        self.memo = std::mem::take(&mut st.endpoints_memo);
        let t1 = Instant::now();
        // The rules first: they need only the Endpoints just made, and the
        // commit (a durable write) need not hold them up. The Endpoints are
        // committed even if a node's rules failed.
        let synced = self.proxy.sync(lab, &st).await;
        let policed = self.policies.sync(lab, &st).await;
        let synced = synced.and(policed);
        let t2 = Instant::now();
        let mut committed = 0;
        if changed {
            self.memo.release_outputs();
            let r = store.commit_working(&mut st);
            let alone = r.is_ok() && !st.saw_others();
            self.memo.committed(&st, alone);
            self.proxy.committed(&st, alone);
            let r = r?;
            if alone {
                committed = r;
            }
        }
        tracing::debug!(
            lab,
            changed,
            committed,
            refresh_ms = (t1 - t0).as_secs_f64() * 1e3,
            sync_ms = (t2 - t1).as_secs_f64() * 1e3,
            commit_ms = t2.elapsed().as_secs_f64() * 1e3,
            "service plane step"
        );
        synced.map(|()| committed)
    }
}
