//! The garbage collector (kube-controller-manager's `garbagecollector`),
//! for the owners netlab's controllers make: a ReplicaSet whose Deployment
//! is gone goes, and a pod whose ReplicaSet is gone is deleted. Deleting an
//! owner through the API picks what happens to its dependents
//! (`propagationPolicy`): `Background` (kubectl's default) and `Foreground`
//! delete them (here both within the same write, so the difference is only
//! in when the owner leaves the store: never before its dependents are
//! marked), `Orphan` keeps them and removes their ownerReferences to it.
//! Owners of kinds the collector does not know are taken to exist: a user's
//! ownerReference to, say, a ConfigMap never deletes anything.

use super::state::{time, ClusterState};
use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use std::collections::HashSet;

/// `DeleteOptions.propagationPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    #[default]
    Background,
    Foreground,
    Orphan,
}

impl Propagation {
    /// kube-apiserver's values; the legacy `orphanDependents: true` too.
    pub fn parse(
        policy: Option<&str>,
        orphan_dependents: Option<bool>,
    ) -> Result<Propagation, String> {
        Ok(match (policy, orphan_dependents) {
            (Some("Background"), _) => Propagation::Background,
            (Some("Foreground"), _) => Propagation::Foreground,
            (Some("Orphan"), _) => Propagation::Orphan,
            (Some(other), _) => {
                return Err(format!(
                    "propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
                ))
            }
            (None, Some(true)) => Propagation::Orphan,
            (None, _) => Propagation::Background,
        })
    }
}

/// The owners the collector can look up: uids of live objects by kind.
pub struct Owners {
    deployments: HashSet<String>,
    replica_sets: HashSet<String>,
}

impl Owners {
    pub fn of(st: &ClusterState) -> Owners {
        let uids = |metas: &mut dyn Iterator<Item = &ObjectMeta>| {
            metas.filter_map(|m| m.uid.clone()).collect::<HashSet<_>>()
        };
        Owners {
            deployments: uids(&mut st.deployments.iter().map(|d| &d.metadata)),
            replica_sets: uids(&mut st.replica_sets.iter().map(|r| &r.metadata)),
        }
    }

    fn exists(&self, o: &OwnerReference) -> bool {
        match o.kind.as_str() {
            "Deployment" => self.deployments.contains(&o.uid),
            "ReplicaSet" => self.replica_sets.contains(&o.uid),
            _ => true,
        }
    }

    /// Whether an object is garbage: it has owners and none exists.
    pub fn is_garbage(&self, meta: &ObjectMeta) -> bool {
        let refs = meta.owner_references.as_deref().unwrap_or_default();
        !refs.is_empty() && refs.iter().all(|o| !self.exists(o))
    }
}

impl ClusterState {
    /// Deletes what lost all its owners, until nothing more does (a
    /// Deployment's ReplicaSets, then their pods). Returns whether anything
    /// was deleted.
    pub fn collect_garbage(&mut self, now: DateTime<Utc>) -> bool {
        let mut changed = false;
        loop {
            let owners = Owners::of(self);
            let before = self.replica_sets.len();
            self.replica_sets
                .retain(|r| !owners.is_garbage(&r.metadata));
            let removed = before != self.replica_sets.len();
            let owners = Owners::of(self);
            for mut p in self.pods.iter_mut() {
                if p.metadata.deletion_timestamp.is_none() && owners.is_garbage(&p.metadata) {
                    p.metadata.deletion_timestamp = Some(time(now));
                    changed = true;
                }
            }
            if !removed {
                return changed;
            }
            changed = true;
        }
    }

    /// `propagationPolicy: Orphan`: the dependents of `owner_uid` stay,
    /// without their ownerReferences to it.
    pub fn orphan_dependents(&mut self, owner_uid: &str) {
        fn unown(m: &mut ObjectMeta, owner_uid: &str) {
            if let Some(refs) = m.owner_references.as_mut() {
                refs.retain(|o| o.uid != owner_uid);
                if refs.is_empty() {
                    m.owner_references = None;
                }
            }
        }
        let owned = |m: &ObjectMeta| {
            m.owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == owner_uid)
        };
        for mut r in self.replica_sets.iter_mut() {
            if owned(&r.metadata) {
                unown(&mut r.metadata, owner_uid);
            }
        }
        for mut p in self.pods.iter_mut() {
            if owned(&p.metadata) {
                unown(&mut p.metadata, owner_uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned_by(kind: &str, uid: &str) -> ObjectMeta {
        ObjectMeta {
            owner_references: Some(vec![OwnerReference {
                kind: kind.into(),
                uid: uid.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn garbage_is_what_lost_every_known_owner() {
        let owners = Owners {
            deployments: ["d1".to_string()].into(),
            replica_sets: ["r1".to_string()].into(),
        };
        assert!(!owners.is_garbage(&owned_by("Deployment", "d1")));
        assert!(owners.is_garbage(&owned_by("Deployment", "gone")));
        assert!(!owners.is_garbage(&owned_by("ReplicaSet", "r1")));
        assert!(owners.is_garbage(&owned_by("ReplicaSet", "gone")));
        // No owners: never garbage. An owner of a kind not tracked: kept.
        assert!(!owners.is_garbage(&ObjectMeta::default()));
        assert!(!owners.is_garbage(&owned_by("ConfigMap", "x")));
        // One live owner among several keeps it.
        let mut two = owned_by("ReplicaSet", "gone");
        two.owner_references.as_mut().unwrap().push(OwnerReference {
            kind: "Deployment".into(),
            uid: "d1".into(),
            ..Default::default()
        });
        assert!(!owners.is_garbage(&two));
    }

    #[test]
    fn propagation_policies() {
        assert_eq!(Propagation::parse(None, None), Ok(Propagation::Background));
        assert_eq!(
            Propagation::parse(Some("Orphan"), None),
            Ok(Propagation::Orphan)
        );
        assert_eq!(
            Propagation::parse(None, Some(true)),
            Ok(Propagation::Orphan)
        );
        assert_eq!(
            Propagation::parse(Some("Foreground"), Some(true)),
            Ok(Propagation::Foreground)
        );
        assert!(Propagation::parse(Some("Sometimes"), None).is_err());
    }
}
