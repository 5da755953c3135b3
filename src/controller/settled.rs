//! How far the lab's control loops have brought the host: the store's
//! revision up to which every change has been acted on (pods started or
//! stopped, endpoints and rules synced), how many pods are still being
//! started (until they serve) or removed in the background, and the errors
//! met on the way.
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
    /// Every change up to this revision has been acted on.
    pub revision: u64,
    /// Recent steps that failed, with the revision each had begun from.
    pub errors: VecDeque<(u64, String)>,
    /// Pods being started (until they serve) or removed in the background.
    pub busy: usize,
}

/// The control loop's side.
pub struct Progress {
    tx: watch::Sender<Settled>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            tx: watch::channel(Settled::default()).0,
        }
    }
}

impl Progress {
    pub fn subscribe(&self) -> watch::Receiver<Settled> {
        self.tx.subscribe()
    }

    /// Everything up to `revision` has been acted on.
    pub fn reached(&self, revision: u64) {
        self.tx.send_if_modified(|s| {
            let more = revision > s.revision;
            s.revision = s.revision.max(revision);
            more
        });
    }

    /// How many pods are being started or removed now.
    pub fn busy(&self, n: usize) {
        self.tx
            .send_if_modified(|s| std::mem::replace(&mut s.busy, n) != n);
    }

    /// A step that began from `revision` failed: what it could do is done,
    /// and the error is kept for those waiting on that revision.
    pub fn failed(&self, revision: u64, error: String) {
        self.tx.send_modify(|s| {
            s.errors.push_back((revision, error));
            while s.errors.len() > ERRORS {
                s.errors.pop_front();
            }
            s.revision = s.revision.max(revision);
        });
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
        rx.wait_for(|s| s.revision >= revision && (!quiet || s.busy == 0)),
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
        p.failed(3, "old".into());
        p.reached(5);
        assert_eq!(
            wait(&mut rx, 4, false, Duration::from_millis(10)).await,
            Some(vec![])
        );
        assert_eq!(
            wait(&mut rx, 6, false, Duration::from_millis(10)).await,
            None
        );
        p.failed(6, "pod/x: not serving".into());
        assert_eq!(
            wait(&mut rx, 6, false, Duration::from_millis(10)).await,
            Some(vec!["pod/x: not serving".to_string()])
        );
        p.reached(4);
        assert_eq!(rx.borrow().revision, 6, "never goes back");
        p.busy(1);
        assert_eq!(
            wait(&mut rx, 6, true, Duration::from_millis(10)).await,
            None
        );
        p.busy(0);
        assert!(wait(&mut rx, 6, true, Duration::from_millis(10))
            .await
            .is_some());
    }
}
