//! Namespaces (kube-apiserver's storage and kube-controller-manager's
//! namespace controller): `kubectl create namespace`, labels on them, and
//! `kubectl delete namespace`, which deletes everything in it.
//!
//! A lab has Kubernetes' four namespaces and the ones made through the API
//! or a lab file (stored, with their labels). A lab file's object may name
//! a namespace the file does not make: `up` makes it (a lab file is the
//! whole lab, so it is taken as meant). Through the API a namespace must
//! exist before anything is made in it, as kube-apiserver's
//! NamespaceLifecycle admission wants (`404 namespaces "x" not found`).
//! A deleted namespace is `Terminating` while its pods stop; its other
//! objects go at once, and the namespace when its last pod has gone.

use super::objects::ObjectError;
use super::state::{namespace, time, uid, ClusterState};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Namespace, NamespaceSpec, NamespaceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// The namespaces every lab has.
pub const BUILT_IN: [&str; 4] = ["default", "kube-node-lease", "kube-public", "kube-system"];

/// The label kube-apiserver puts on every namespace (since 1.21).
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

fn labelled(meta: &mut ObjectMeta, name: &str) {
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(NAME_LABEL.into(), name.into());
}

fn with_status(mut ns: Namespace, terminating: bool) -> Namespace {
    ns.spec.get_or_insert_with(|| NamespaceSpec {
        finalizers: Some(vec!["kubernetes".into()]),
    });
    ns.status = Some(NamespaceStatus {
        phase: Some(if terminating { "Terminating" } else { "Active" }.into()),
        ..Default::default()
    });
    ns
}

impl ClusterState {
    /// The stored namespace `name`, if it was made or changed as an object.
    fn stored_namespace(&self, name: &str) -> Option<usize> {
        self.namespaces
            .iter()
            .position(|n| n.metadata.name.as_deref() == Some(name))
    }

    /// Whether namespace `name` exists (it may be terminating).
    pub fn has_namespace(&self, name: &str) -> bool {
        BUILT_IN.contains(&name) || self.stored_namespace(name).is_some()
    }

    /// Stores every namespace an object names that the lab does not have
    /// yet, as made now (`up` of a lab file whose objects name them).
    pub(super) fn store_named(&mut self, now: DateTime<Utc>, rng: &mut impl rand::Rng) {
        let mut named: Vec<String> = self
            .namespaced_metas()
            .map(|m| namespace(m).to_string())
            .filter(|n| !self.has_namespace(n))
            .collect();
        named.sort();
        named.dedup();
        for name in named {
            let mut ns = self.implied(&name);
            ns.metadata.creation_timestamp = Some(time(now));
            ns.metadata.uid = Some(uid(rng));
            self.namespaces.push(ns);
        }
    }

    /// Whether `name` is being deleted.
    pub fn terminating(&self, name: &str) -> bool {
        self.stored_namespace(name)
            .is_some_and(|i| self.namespaces[i].metadata.deletion_timestamp.is_some())
    }

    /// Every namespace as the API shows it, by name.
    pub fn namespace_objects(&self) -> Vec<Namespace> {
        self.namespace_names()
            .into_iter()
            .map(|n| match self.stored_namespace(&n) {
                Some(i) => {
                    let ns = self.namespaces[i].clone();
                    let gone = ns.metadata.deletion_timestamp.is_some();
                    with_status(ns, gone)
                }
                None => self.implied(&n),
            })
            .collect()
    }

    /// Whether `name` still holds an object.
    fn holds_objects(&self, name: &str) -> bool {
        self.namespaced_metas().any(|m| namespace(m) == name)
    }

    /// A namespace the lab has without storing it (a built-in one no one
    /// changed), as the API shows it.
    fn implied(&self, name: &str) -> Namespace {
        let mut metadata = ObjectMeta {
            name: Some(name.into()),
            creation_timestamp: Some(time(self.created)),
            ..Default::default()
        };
        labelled(&mut metadata, name);
        with_status(
            Namespace {
                metadata,
                ..Default::default()
            },
            false,
        )
    }

    /// The namespace controller's last step: a deleted namespace goes once
    /// nothing is left in it. Returns whether one went.
    pub(super) fn sweep_namespaces(&mut self) -> bool {
        let done: Vec<String> = self
            .namespaces
            .iter()
            .filter(|n| n.metadata.deletion_timestamp.is_some())
            .filter_map(|n| n.metadata.name.clone())
            .filter(|n| !self.holds_objects(n))
            .collect();
        if done.is_empty() {
            return false;
        }
        self.namespaces
            .retain(|n| !n.metadata.name.as_ref().is_some_and(|n| done.contains(n)));
        // The events of its pods' last moments go with it.
        self.events
            .retain(|e| !done.iter().any(|n| n == namespace(&e.metadata)));
        true
    }
}

/// `kubectl create namespace`, a Namespace in a lab file, and updates of
/// its labels and annotations (its only fields a user sets).
pub fn apply_namespace(
    st: &mut ClusterState,
    mut ns: Namespace,
    create: bool,
    now: DateTime<Utc>,
    rng: &mut impl rand::Rng,
) -> Result<String, ObjectError> {
    let name = ns.metadata.name.clone().unwrap_or_default();
    labelled(&mut ns.metadata, &name);
    let exists = st.namespace_names().contains(&name);
    if create && exists {
        return Err(ObjectError::AlreadyExists {
            kind: "namespaces",
            name,
        });
    }
    if let Some(i) = st.stored_namespace(&name) {
        let old = &st.namespaces[i].metadata;
        let changed =
            old.labels != ns.metadata.labels || old.annotations != ns.metadata.annotations;
        if changed {
            st.namespaces[i].metadata.labels = ns.metadata.labels;
            st.namespaces[i].metadata.annotations = ns.metadata.annotations;
        }
        let verb = if changed { "configured" } else { "unchanged" };
        return Ok(format!("namespace/{name} {verb}"));
    }
    // A namespace the lab had without storing it keeps its age.
    let made = if exists { st.created } else { now };
    ns.metadata.creation_timestamp = Some(time(made));
    ns.metadata.uid = Some(uid(rng));
    ns.metadata.namespace = None;
    ns.metadata.deletion_timestamp = None;
    ns.status = None;
    st.namespaces.push(with_status(ns, false));
    Ok(format!(
        "namespace/{name} {}",
        if exists { "configured" } else { "created" }
    ))
}

/// `kubectl delete namespace`: its objects go (pods gracefully, so the
/// namespace is Terminating until they have stopped); Kubernetes' own
/// namespaces may not be deleted.
pub fn delete_namespace(
    st: &mut ClusterState,
    name: &str,
    now: DateTime<Utc>,
) -> Result<String, ObjectError> {
    if ["default", "kube-public", "kube-system"].contains(&name) {
        return Err(ObjectError::Forbidden(format!(
            "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
        )));
    }
    if !st.namespace_names().iter().any(|n| n == name) {
        return Err(ObjectError::NotFound {
            kind: "namespaces",
            name: name.into(),
        });
    }
    if st.stored_namespace(name).is_none() {
        let mut ns = st.implied(name);
        ns.metadata.uid = Some(uid(&mut rand::rng()));
        st.namespaces.push(ns);
    }
    let i = st.stored_namespace(name).expect("stored above");
    if st.namespaces[i].metadata.deletion_timestamp.is_none() {
        st.namespaces[i].metadata.deletion_timestamp = Some(time(now));
        st.namespaces[i].status = with_status(Namespace::default(), true).status;
    }
    let here = |m: &ObjectMeta| namespace(m) == name;
    for mut p in st.pods.iter_mut() {
        if here(&p.metadata) && p.metadata.deletion_timestamp.is_none() {
            p.metadata.deletion_timestamp = Some(time(now));
        }
    }
    let services: Vec<String> = st
        .services
        .iter()
        .filter(|s| here(&s.metadata))
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    for s in services {
        st.delete_service(name, &s)?;
    }
    st.deployments.retain(|o| !here(&o.metadata));
    st.replica_sets.retain(|o| !here(&o.metadata));
    st.secrets.retain(|o| !here(&o.metadata));
    st.config_maps.retain(|o| !here(&o.metadata));
    st.service_accounts.retain(|o| !here(&o.metadata));
    st.roles.retain(|o| !here(&o.metadata));
    st.role_bindings.retain(|o| !here(&o.metadata));
    st.network_policies.retain(|o| !here(&o.metadata));
    st.events.retain(|o| !here(&o.metadata));
    st.sweep_namespaces();
    Ok(format!("namespace \"{name}\" deleted"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_made_labelled_and_deleted_with_their_objects() {
        let mut st = ClusterState::empty();
        let mut rng = rand::rng();
        let now = Utc::now();
        let ns = |name: &str| Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            apply_namespace(&mut st, ns("web"), true, now, &mut rng).unwrap(),
            "namespace/web created"
        );
        assert!(matches!(
            apply_namespace(&mut st, ns("web"), true, now, &mut rng),
            Err(ObjectError::AlreadyExists { .. })
        ));
        assert!(matches!(
            apply_namespace(&mut st, ns("default"), true, now, &mut rng),
            Err(ObjectError::AlreadyExists { .. })
        ));
        let listed = st.namespace_objects();
        let web = listed
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some("web"))
            .unwrap();
        assert_eq!(web.metadata.labels.as_ref().unwrap()[NAME_LABEL], "web");
        assert_eq!(
            web.status.as_ref().unwrap().phase.as_deref(),
            Some("Active")
        );
        // A label on a namespace the lab had without storing it.
        let mut labelled = ns("kube-system");
        labelled.metadata.labels = Some([("team".to_string(), "ops".to_string())].into());
        assert_eq!(
            apply_namespace(&mut st, labelled, false, now, &mut rng).unwrap(),
            "namespace/kube-system configured"
        );
        assert_eq!(st.namespace_names().len(), 5);
        assert!(st.has_namespace("web") && st.has_namespace("kube-node-lease"));
        assert!(!st.has_namespace("shop"));

        // Deleting one takes its objects; its pods stop first.
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "web"}
        }))
        .unwrap();
        st.pods.push(pod);
        let cm: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "c", "namespace": "web"}
        }))
        .unwrap();
        st.config_maps.push(cm);
        let np = |ns: &str| -> k8s_openapi::api::networking::v1::NetworkPolicy {
            serde_json::from_value(serde_json::json!({"metadata": {"name": "n", "namespace": ns}}))
                .unwrap()
        };
        st.network_policies.push(np("web"));
        st.network_policies.push(np("default"));
        assert!(matches!(
            delete_namespace(&mut st, "default", now),
            Err(ObjectError::Forbidden(_))
        ));
        assert_eq!(
            delete_namespace(&mut st, "web", now).unwrap(),
            "namespace \"web\" deleted"
        );
        assert!(st.config_maps.is_empty());
        assert_eq!(st.network_policies.len(), 1, "the other namespace's stays");
        assert!(st.pods[0].metadata.deletion_timestamp.is_some());
        assert!(st.terminating("web"));
        let phase = |st: &ClusterState| {
            st.namespace_objects()
                .into_iter()
                .find(|n| n.metadata.name.as_deref() == Some("web"))
                .and_then(|n| n.status?.phase)
        };
        assert_eq!(phase(&st).as_deref(), Some("Terminating"));
        assert!(!st.sweep_namespaces());
        st.pods.retain(|_| false);
        assert!(st.sweep_namespaces());
        assert_eq!(phase(&st), None);
        assert!(matches!(
            delete_namespace(&mut st, "web", now),
            Err(ObjectError::NotFound { .. })
        ));
    }

    #[test]
    fn a_lab_file_makes_the_namespaces_its_objects_name() {
        use rand::SeedableRng;
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: shop\ndata:\n  k: v\n";
        let spec = crate::lab::load_str(std::path::Path::new("t.yaml"), text, &Default::default())
            .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let now = Utc::now();
        let st = ClusterState::plan(&spec, &Default::default(), now, &mut rng).unwrap();
        assert!(st.has_namespace("shop"));
        let shop = &st.namespaces[st.stored_namespace("shop").unwrap()];
        assert!(shop.metadata.uid.is_some());
        assert_eq!(shop.metadata.labels.as_ref().unwrap()[NAME_LABEL], "shop");
        // Only namespaces that exist are listed.
        assert!(!st.namespace_names().contains(&"nowhere".to_string()));
    }
}
