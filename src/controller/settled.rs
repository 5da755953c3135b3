//! How far the lab's control loops have brought the host: the store's
//! revision up to which every change has been acted on by each of them
//! (pods started or stopped by the lab's loop; Endpoints, EndpointSlices
//! and every node's rules by the service plane), how many pods are still
//! being started (until they serve) or removed in the background, and the
//! errors met on the way.
//!
//! API writes are acknowledged once committed, as kube-apiserver's are;
//! the host follows. kubectl's users wait as in Kubernetes (`kubectl wait`,
//! `rollout status`). netlab's own verbs wait for this (through the API's
//! [`PATH`]), so that `netlab apply` still returns when the pods it made
//! serve and says why when they do not.

use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::watch;

/// Where the API serves it (outside `/api` and `/apis`: not a Kubernetes
/// resource, and no discovery lists it).
pub const PATH: &str = "/netlab/v1/settled";

/// How many recent errors are kept.
const ERRORS: usize = 16;

#[derive(Clone, Debug, Default)]
pub struct Settled {
    /// Every change up to this revision has been acted on by every loop.
    pub revision: u64,
    /// Each loop's own (by [`Part`]).
    parts: [u64; 2],
    /// The store's revision when the last busy pod was done: a quiet
    /// waiter waits for every loop to have acted on it too (a pod just
    /// marked ready is in the rules).
    quiet_from: u64,
    /// Recent steps that failed, with the revision each had begun from.
    pub errors: VecDeque<(u64, String)>,
    /// Pods being started (until they serve) or removed in the background.
    pub busy: usize,
}

/// The loops that report how far they are.
#[derive(Clone, Copy, Debug)]
pub enum Part {
    /// The lab's loop: pods started, stopped, restarted, their statuses.
    Pods = 0,
    /// The service plane: Endpoints, EndpointSlices and the rules.
    Services = 1,
}

/// The control loops' side.
#[derive(Clone)]
pub struct Progress {
    tx: watch::Sender<Settled>,
    /// How far the service plane is alone: pod removals wait for it, so
    /// that a terminating pod leaves the rules before it stops.
    services: watch::Sender<u64>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            tx: watch::channel(Settled::default()).0,
            services: watch::channel(0).0,
        }
    }
}

impl Progress {
    pub fn subscribe(&self) -> watch::Receiver<Settled> {
        self.tx.subscribe()
    }

    /// The service plane's progress alone.
    pub fn services(&self) -> watch::Receiver<u64> {
        self.services.subscribe()
    }

    /// Everything up to `revision` has been acted on by `part`.
    pub fn reached(&self, part: Part, revision: u64) {
        if let Part::Services = part {
            self.services.send_if_modified(|r| {
                let more = revision > *r;
                *r = (*r).max(revision);
                more
            });
        }
        self.tx.send_if_modified(|s| {
            let p = &mut s.parts[part as usize];
            let more = revision > *p;
            *p = (*p).max(revision);
            s.revision = s.parts.iter().copied().min().unwrap_or_default();
            more
        });
    }

    /// How many pods are being started or removed now; `latest` is the
    /// store's revision now (when the count drops to 0, quiet waiters wait
    /// for every loop to reach it).
    pub fn busy(&self, n: usize, latest: u64) {
        self.tx.send_if_modified(|s| {
            let was = std::mem::replace(&mut s.busy, n);
            if n == 0 && was != 0 {
                s.quiet_from = latest;
            }
            was != n
        });
    }

    /// A step of `part` that began from `revision` failed: what it could
    /// do is done, and the error is kept for those waiting on that revision.
    pub fn failed(&self, part: Part, revision: u64, error: String) {
        self.tx.send_modify(|s| {
            s.errors.push_back((revision, error));
            while s.errors.len() > ERRORS {
                s.errors.pop_front();
            }
        });
        self.reached(part, revision);
    }
}

/// Waits until `revision` is settled (and, with `quiet`, until no pod is
/// being started or removed either); returns the errors of the steps that began from
/// it or later (empty: all went well). None on timeout.
pub async fn wait(
    rx: &mut watch::Receiver<Settled>,
    revision: u64,
    quiet: bool,
    timeout: Duration,
) -> Option<Vec<String>> {
    let done = tokio::time::timeout(
        timeout,
        rx.wait_for(|s| {
            s.revision >= revision && (!quiet || (s.busy == 0 && s.revision >= s.quiet_from))
        }),
    )
    .await;
    let s = done.ok()?.ok()?;
    Some(
        s.errors
            .iter()
            .filter(|(r, _)| *r >= revision)
            .map(|(_, e)| e.clone())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_learn_of_errors_from_their_revision_on() {
        let p = Progress::default();
        let mut rx = p.subscribe();
        p.failed(Part::Pods, 3, "old".into());
        p.reached(Part::Pods, 5);
        p.reached(Part::Services, 5);
        assert_eq!(
            wait(&mut rx, 4, false, Duration::from_millis(10)).await,
            Some(vec![])
        );
        assert_eq!(
            wait(&mut rx, 6, false, Duration::from_millis(10)).await,
            None
        );
        p.reached(Part::Services, 6);
        p.failed(Part::Pods, 6, "pod/x: not serving".into());
        assert_eq!(
            wait(&mut rx, 6, false, Duration::from_millis(10)).await,
            Some(vec!["pod/x: not serving".to_string()])
        );
        p.reached(Part::Pods, 4);
        assert_eq!(rx.borrow().revision, 6, "never goes back");
        p.busy(1, 6);
        assert_eq!(
            wait(&mut rx, 6, true, Duration::from_millis(10)).await,
            None
        );
        p.busy(0, 6);
        assert!(wait(&mut rx, 6, true, Duration::from_millis(10))
            .await
            .is_some());
    }

    #[tokio::test]
    async fn settled_is_where_the_slowest_loop_is() {
        let p = Progress::default();
        let mut rx = p.subscribe();
        let mut services = p.services();
        p.reached(Part::Pods, 9);
        assert_eq!(
            wait(&mut rx, 9, false, Duration::from_millis(10)).await,
            None,
            "the rules are not there yet"
        );
        p.reached(Part::Services, 9);
        assert!(wait(&mut rx, 9, false, Duration::from_millis(10))
            .await
            .is_some());
        assert_eq!(*services.borrow_and_update(), 9);
        // The last busy pod is marked ready at 10: a quiet waiter for 9
        // waits until its endpoint is in the rules (10) as well.
        p.busy(1, 9);
        p.busy(0, 10);
        p.reached(Part::Pods, 10);
        assert_eq!(
            wait(&mut rx, 9, true, Duration::from_millis(10)).await,
            None
        );
        p.reached(Part::Services, 10);
        assert!(wait(&mut rx, 9, true, Duration::from_millis(10))
            .await
            .is_some());
    }
}
