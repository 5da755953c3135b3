//! The API server's side of apply, create, delete, scale and expose: pure
//! edits of the object store, each returning kubectl's one-line answer
//! (`service/my-nginx created`). The controller then converges the host.

use super::collection::Collection;
use super::gc::Propagation;
use super::services::{ServiceBatch, ServiceError};
use super::state::{self, namespace, time, ClusterState, StateError};
use crate::lab::LabSpec;
use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{kind} {name:?} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("{0}")]
    Invalid(String),
    /// Refused by admission (kube-apiserver's 403).
    #[error("{0}")]
    Forbidden(String),
}

/// How `apply` treats objects that exist: `create` refuses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Apply,
    Create,
}

fn same_key(a: &ObjectMeta, b: &ObjectMeta) -> bool {
    a.name == b.name && namespace(a) == namespace(b)
}

/// `kubectl apply -f` / `create -f` of the objects of lab files.
pub fn apply(
    st: &mut ClusterState,
    spec: &LabSpec,
    mode: Mode,
    now: DateTime<Utc>,
    rng: &mut impl rand::Rng,
) -> Result<Vec<String>, ObjectError> {
    let mut out = Vec::new();
    for n in &spec.namespaces {
        let create = mode == Mode::Create;
        out.push(super::namespaces::apply_namespace(
            st,
            n.object.clone(),
            create,
            now,
            rng,
        )?);
    }
    // Secrets and ConfigMaps first: pods that mount them start at once.
    for s in &spec.secrets {
        out.push(apply_secret(st, s.object.clone(), mode, now, rng)?);
    }
    for c in &spec.config_maps {
        out.push(apply_config_map(st, c.object.clone(), mode, now, rng)?);
    }
    // ServiceAccounts before pods: admission reads their automount.
    for a in &spec.access {
        out.push(apply_access(st, a.object.clone(), mode, now, rng)?);
    }
    for n in &spec.network_policies {
        out.push(apply_network_policy(st, n.object.clone(), mode, now, rng)?);
    }
    for d in &spec.deployments {
        out.push(apply_deployment(st, d.object.clone(), mode, now, rng)?);
    }
    for p in &spec.pods {
        out.push(apply_pod(st, p.object.clone(), mode, now, rng)?);
    }
    let mut services = st.service_batch();
    for s in &spec.services {
        out.push(apply_service_in(
            &mut services,
            s.object.clone(),
            mode,
            now,
            rng,
        )?);
    }
    drop(services);
    st.reconcile_workloads(now, rng)?;
    Ok(out)
}

fn verb(existed: bool, changed: bool) -> &'static str {
    match (existed, changed) {
        (false, _) => "created",
        (true, true) => "configured",
        (true, false) => "unchanged",
    }
}

/// What `apply` needs of Secrets and ConfigMaps beyond their metadata:
/// their data, and the fields an update may not change.
trait DataObject: Sized + k8s_openapi::Resource + k8s_openapi::Metadata<Ty = ObjectMeta> {
    /// "secret", "configmap": kubectl's prefix and (with an s) plural.
    const PREFIX: &'static str;
    fn store(st: &mut ClusterState) -> &mut Collection<Self>;
    fn immutable(&self) -> Option<bool>;
    fn same_data(&self, other: &Self) -> bool;
    /// Takes the data of `new` (labels and annotations are taken by the
    /// caller); refuses what may not change.
    fn take(&mut self, new: Self) -> Result<(), String>;
}

impl DataObject for Secret {
    const PREFIX: &'static str = "secret";
    fn store(st: &mut ClusterState) -> &mut Collection<Self> {
        &mut st.secrets
    }
    fn immutable(&self) -> Option<bool> {
        self.immutable
    }
    fn same_data(&self, other: &Self) -> bool {
        self.data == other.data
    }
    fn take(&mut self, new: Self) -> Result<(), String> {
        if self.type_ != new.type_ {
            return Err("type: field is immutable (delete the secret and create it again)".into());
        }
        self.data = new.data;
        self.immutable = new.immutable;
        Ok(())
    }
}

impl DataObject for ConfigMap {
    const PREFIX: &'static str = "configmap";
    fn store(st: &mut ClusterState) -> &mut Collection<Self> {
        &mut st.config_maps
    }
    fn immutable(&self) -> Option<bool> {
        self.immutable
    }
    fn same_data(&self, other: &Self) -> bool {
        self.data == other.data && self.binary_data == other.binary_data
    }
    fn take(&mut self, new: Self) -> Result<(), String> {
        self.data = new.data;
        self.binary_data = new.binary_data;
        self.immutable = new.immutable;
        Ok(())
    }
}

/// Creates or updates a Secret or ConfigMap (validated by the caller).
fn apply_data<T: DataObject + Clone>(
    st: &mut ClusterState,
    mut obj: T,
    mode: Mode,
    now: DateTime<Utc>,
    rng: &mut impl rand::Rng,
) -> Result<String, ObjectError> {
    let name = obj.metadata().name.clone().unwrap_or_default();
    let invalid = |m: String| ObjectError::Invalid(format!("{} {name:?} is invalid: {m}", T::KIND));
    let list = T::store(st);
    let Some(mut existing) = list
        .iter_mut()
        .find(|x| same_key(x.metadata(), obj.metadata()))
    else {
        obj.metadata_mut().creation_timestamp = Some(time(now));
        obj.metadata_mut().uid = Some(state::uid(rng));
        list.push(obj);
        return Ok(format!("{}/{name} created", T::PREFIX));
    };
    if mode == Mode::Create {
        return Err(ObjectError::AlreadyExists {
            kind: if T::PREFIX == "secret" {
                "secrets"
            } else {
                "configmaps"
            },
            name,
        });
    }
    if existing.immutable() == Some(true) && !existing.same_data(&obj) {
        return Err(invalid(
            "data: field is immutable when `immutable` is set".into(),
        ));
    }
    let changed = !existing.same_data(&obj)
        || existing.metadata().labels != obj.metadata().labels
        || existing.immutable() != obj.immutable();
    let meta = obj.metadata().clone();
    existing.take(obj).map_err(invalid)?;
    existing.metadata_mut().labels = meta.labels;
    existing.metadata_mut().annotations = meta.annotations;
    Ok(format!("{}/{name} {}", T::PREFIX, verb(true, changed)))
}

/// Stores an object as given (the access kinds have no behaviour of their
/// own to apply): created, or everything but its identity taken over.
fn apply_plain<T>(
    list: &mut Collection<T>,
    mut obj: T,
    (prefix, plural): (&str, &'static str),
    mode: Mode,
    now: DateTime<Utc>,
    rng: &mut impl rand::Rng,
) -> Result<String, ObjectError>
where
    T: Clone + serde::Serialize + k8s_openapi::Metadata<Ty = ObjectMeta>,
{
    let name = obj.metadata().name.clone().unwrap_or_default();
    let Some(mut existing) = list
        .iter_mut()
        .find(|x| same_key(x.metadata(), obj.metadata()))
    else {
        obj.metadata_mut().creation_timestamp = Some(time(now));
        obj.metadata_mut().uid = Some(state::uid(rng));
        list.push(obj);
        return Ok(format!("{prefix}/{name} created"));
    };
    if mode == Mode::Create {
        return Err(ObjectError::AlreadyExists { kind: plural, name });
    }
    let body = |x: &T| {
        let mut v = serde_json::to_value(x).expect("objects serialize");
        if let Some(o) = v.as_object_mut() {
            o.remove("metadata");
        }
        v
    };
    let (old, new) = (existing.metadata(), obj.metadata());
    let changed = body(&existing) != body(&obj)
        || old.labels != new.labels
        || old.annotations != new.annotations;
    let mut meta = old.clone();
    meta.labels = new.labels.clone();
    meta.annotations = new.annotations.clone();
    *obj.metadata_mut() = meta;
    *existing = obj;
    Ok(format!("{prefix}/{name} {}", verb(true, changed)))
}

/// A ServiceAccount, Role, RoleBinding, ClusterRole or ClusterRoleBinding
/// (validated by the caller).
pub fn apply_access(
    st: &mut ClusterState,
    obj: super::access::AccessObject,
    mode: Mode,
    now: DateTime<Utc>,
    rng: &mut impl rand::Rng,
) -> Result<String, ObjectError> {
    use super::access::AccessObject as A;
    match obj {
        A::ServiceAccount(o) => apply_plain(
            &mut st.service_accounts,
            o,
            ("serviceaccount", "serviceaccounts"),
            mode,
            now,
            rng,
        ),
        A::Role(o) => apply_plain(
            &mut st.roles,
            o,
            (
                "role.rbac.authorization.k8s.io",
                "roles.rbac.authorization.k8s.io",
            ),
            mode,
            now,
            rng,
        ),
        A::RoleBinding(o) => apply_plain(
            &mut st.role_bindings,
            o,
            (
                "rolebinding.rbac.authorization.k8s.io",
                "rolebindings.rbac.authorization.k8s.io",
            ),
            mode,
            now,
            rng,
        ),
        A::ClusterRole(o) => apply_plain(
            &mut st.cluster_roles,
            o,
            (
                "clusterrole.rbac.authorization.k8s.io",
                "clusterroles.rbac.authorization.k8s.io",
            ),
            mode,
            now,
            rng,
        ),
        A::ClusterRoleBinding(o) => apply_plain(
            &mut st.cluster_role_bindings,
            o,
            (
                "clusterrolebinding.rbac.authorization.k8s.io",
                "clusterrolebindings.rbac.authorization.k8s.io",
            ),
            mode,
            now,
            rng,
        ),
    }
}

/// A NetworkPolicy, defaulted and validated as kube-apiserver does
/// (`network_policies::normalize`), then stored as given.
pub fn apply_network_policy(
    st: &mut ClusterState,
    np: k8s_openapi::api::networking::v1::NetworkPolicy,
    mode: Mode,
    now: DateTime<Utc>,
    rng: &mut impl rand::Rng,
) -> Result<String, ObjectError> {
    let np = super::network_policies::normalize(np).map_err(ObjectError::Invalid)?;
    apply_plain(
        &mut st.network_policies,
        np,
        (
            "networkpolicy.networking.k8s.io",
            "networkpolicies.networking.k8s.io",
        ),
        mode,
        now,
        rng,
    )
}

/// A Secret, validated and defaulted as the API server does. Its data
/// never appears in the answer or in a log.
pub fn apply_secret(
    st: &mut ClusterState,
    secret: Secret,
    mode: Mode,
    now: DateTime<Utc>,
    rng: &mut impl rand::Rng,
) -> Result<String, ObjectError> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let secret = super::secrets::normalize_secret(secret)
        .map_err(|m| ObjectError::Invalid(format!("Secret {name:?} is invalid: {m}")))?;
    apply_data(st, secret, mode, now, rng)
}

pub fn apply_config_map(
    st: &mut ClusterState,
    cm: ConfigMap,
    mode: Mode,
    now: DateTime<Utc>,
    rng: &mut impl rand::Rng,
) -> Result<String, ObjectError> {
    let name = cm.metadata.name.clone().unwrap_or_default();
    super::secrets::validate_config_map(&cm)
        .map_err(|m| ObjectError::Invalid(format!("ConfigMap {name:?} is invalid: {m}")))?;
    apply_data(st, cm, mode, now, rng)
}

pub fn apply_service(
    st: &mut ClusterState,
    svc: Service,
    mode: Mode,
    now: DateTime<Utc>,
    rng: &mut impl rand::Rng,
) -> Result<String, ObjectError> {
    apply_service_in(&mut st.service_batch(), svc, mode, now, rng)
}

fn apply_service_in(
    st: &mut ServiceBatch,
    svc: Service,
    mode: Mode,
    now: DateTime<Utc>,
    rng: &mut impl rand::Rng,
) -> Result<String, ObjectError> {
    let name = svc.metadata.name.clone().unwrap_or_default();
    let ns = namespace(&svc.metadata).to_string();
    let before = st.get(&ns, &name).cloned();
    if before.is_some() && mode == Mode::Create {
        return Err(ObjectError::AlreadyExists {
            kind: "services",
            name,
        });
    }
    st.upsert(svc, now, rng)?;
    let after = st.get(&ns, &name).cloned();
    Ok(format!(
        "service/{name} {}",
        verb(
            before.is_some(),
            before.map(|b| b.spec) != after.map(|a| a.spec)
        )
    ))
}

pub fn apply_pod(
    st: &mut ClusterState,
    mut pod: Pod,
    mode: Mode,
    now: DateTime<Utc>,
    rng: &mut impl rand::Rng,
) -> Result<String, ObjectError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    if let Some(mut existing) = st
        .pods
        .iter_mut()
        .find(|p| same_key(&p.metadata, &pod.metadata) && p.metadata.deletion_timestamp.is_none())
    {
        if mode == Mode::Create {
            return Err(ObjectError::AlreadyExists { kind: "pods", name });
        }
        // Labels and annotations can change on a live pod; its spec cannot.
        let changed = existing.metadata.labels != pod.metadata.labels
            || existing.metadata.annotations != pod.metadata.annotations;
        existing.metadata.labels = pod.metadata.labels;
        existing.metadata.annotations = pod.metadata.annotations;
        return Ok(format!("pod/{name} {}", verb(true, changed)));
    }
    pod.metadata.creation_timestamp = Some(time(now));
    pod.metadata.uid = Some(state::uid(rng));
    pod.status = None;
    st.place(pod).map_err(|e| match e {
        StateError::Forbidden(m) => ObjectError::Forbidden(m),
        e => e.into(),
    })?;
    Ok(format!("pod/{name} created"))
}

pub fn apply_deployment(
    st: &mut ClusterState,
    mut dep: Deployment,
    mode: Mode,
    now: DateTime<Utc>,
    rng: &mut impl rand::Rng,
) -> Result<String, ObjectError> {
    let name = dep.metadata.name.clone().unwrap_or_default();
    match st
        .deployments
        .iter()
        .position(|d| same_key(&d.metadata, &dep.metadata))
    {
        Some(i) => {
            let existing = &mut st.deployments[i];
            if mode == Mode::Create {
                return Err(ObjectError::AlreadyExists {
                    kind: "deployments.apps",
                    name,
                });
            }
            // The revision annotation is the controller's: an update that
            // does not carry it keeps it.
            let mut annotations = dep.metadata.annotations.clone();
            if let Some(rev) = existing
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(super::deployments::REVISION))
            {
                annotations
                    .get_or_insert_with(BTreeMap::new)
                    .entry(super::deployments::REVISION.to_string())
                    .or_insert_with(|| rev.clone());
            }
            let spec_changed = existing.spec != dep.spec;
            let changed = spec_changed
                || existing.metadata.labels != dep.metadata.labels
                || existing.metadata.annotations != annotations;
            if spec_changed {
                // metadata.generation counts spec changes only.
                existing.metadata.generation = Some(existing.metadata.generation.unwrap_or(1) + 1);
            }
            existing.spec = dep.spec;
            existing.metadata.labels = dep.metadata.labels;
            existing.metadata.annotations = annotations;
            Ok(format!("deployment.apps/{name} {}", verb(true, changed)))
        }
        None => {
            dep.metadata.creation_timestamp = Some(time(now));
            dep.metadata.uid = Some(state::uid(rng));
            dep.metadata.generation = Some(1);
            dep.status = None;
            st.deployments.push(dep);
            Ok(format!("deployment.apps/{name} created"))
        }
    }
}

/// `kubectl scale deployment NAME --replicas=N`.
pub fn scale(
    st: &mut ClusterState,
    namespace_: &str,
    name: &str,
    replicas: i32,
    now: DateTime<Utc>,
    rng: &mut impl rand::Rng,
) -> Result<String, ObjectError> {
    if replicas < 0 {
        return Err(ObjectError::Invalid(format!(
            "--replicas={replicas}: the number of replicas must be 0 or more"
        )));
    }
    let mut dep = st
        .deployments
        .iter_mut()
        .find(|d| d.metadata.name.as_deref() == Some(name) && namespace(&d.metadata) == namespace_)
        .ok_or_else(|| ObjectError::NotFound {
            kind: "deployments.apps",
            name: name.into(),
        })?;
    dep.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
    st.reconcile_workloads(now, rng)?;
    Ok(format!("deployment.apps/{name} scaled"))
}

/// `kubectl scale rs NAME --replicas=N`: a ReplicaSet a Deployment owns is
/// set back by it, as in Kubernetes.
pub fn scale_replica_set(
    st: &mut ClusterState,
    namespace_: &str,
    name: &str,
    replicas: i32,
) -> Result<String, ObjectError> {
    if replicas < 0 {
        return Err(ObjectError::Invalid(format!(
            "--replicas={replicas}: the number of replicas must be 0 or more"
        )));
    }
    let mut rs = st
        .replica_sets
        .iter_mut()
        .find(|r| r.metadata.name.as_deref() == Some(name) && namespace(&r.metadata) == namespace_)
        .ok_or_else(|| ObjectError::NotFound {
            kind: "replicasets.apps",
            name: name.into(),
        })?;
    let spec = rs.spec.get_or_insert_with(Default::default);
    if spec.replicas != Some(replicas) {
        spec.replicas = Some(replicas);
        rs.metadata.generation = Some(rs.metadata.generation.unwrap_or(1) + 1);
    }
    Ok(format!("replicaset.apps/{name} scaled"))
}

/// An update of a ReplicaSet: its size, template, labels and annotations
/// (its selector is immutable, as in apps/v1).
fn update_replica_set(st: &mut ClusterState, new: ReplicaSet) -> Result<String, ObjectError> {
    let name = new.metadata.name.clone().unwrap_or_default();
    let mut rs = st
        .replica_sets
        .iter_mut()
        .find(|r| same_key(&r.metadata, &new.metadata))
        .ok_or_else(|| ObjectError::NotFound {
            kind: "replicasets.apps",
            name: name.clone(),
        })?;
    let (old_spec, new_spec) = (
        rs.spec.clone().unwrap_or_default(),
        new.spec.unwrap_or_default(),
    );
    if old_spec.selector != new_spec.selector {
        return Err(ObjectError::Invalid(format!(
            "ReplicaSet.apps {name:?} is invalid: spec.selector: Invalid value: field is immutable"
        )));
    }
    let changed = old_spec != new_spec
        || rs.metadata.labels != new.metadata.labels
        || rs.metadata.annotations != new.metadata.annotations;
    if old_spec != new_spec {
        rs.metadata.generation = Some(rs.metadata.generation.unwrap_or(1) + 1);
    }
    rs.spec = Some(new_spec);
    rs.metadata.labels = new.metadata.labels;
    rs.metadata.annotations = new.metadata.annotations;
    Ok(format!("replicaset.apps/{name} {}", verb(true, changed)))
}

/// `kubectl delete KIND NAME`: pods are marked for deletion (the controller
/// stops them), a Deployment takes its ReplicaSets and their pods with it.
pub fn delete(
    st: &mut ClusterState,
    kind: &str,
    namespace_: &str,
    name: &str,
    now: DateTime<Utc>,
) -> Result<String, ObjectError> {
    delete_with(st, kind, namespace_, name, Propagation::Background, now)
}

/// What a deleted owner's dependents become: deleted by the garbage
/// collector, or orphaned.
fn release_dependents(
    st: &mut ClusterState,
    owner: &ObjectMeta,
    propagation: Propagation,
    now: DateTime<Utc>,
) {
    match propagation {
        Propagation::Orphan => st.orphan_dependents(owner.uid.as_deref().unwrap_or_default()),
        Propagation::Background | Propagation::Foreground => {
            st.collect_garbage(now);
        }
    }
}

/// A deleted pod's grace period: `given` (a DELETE's `gracePeriodSeconds`),
/// else its `terminationGracePeriodSeconds`, else 30 s; a later delete may
/// shorten it, never lengthen it (as kube-apiserver's graceful deletion).
pub fn grace(st: &mut ClusterState, namespace_: &str, name: &str, given: Option<i64>) {
    let Some(mut pod) = st
        .pods
        .iter_mut()
        .find(|p| p.metadata.name.as_deref() == Some(name) && namespace(&p.metadata) == namespace_)
    else {
        return;
    };
    let spec = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    let want = given.unwrap_or(spec).max(0);
    let now = pod.metadata.deletion_grace_period_seconds;
    pod.metadata.deletion_grace_period_seconds = Some(now.map_or(want, |g| g.min(want)));
}

/// A delete with the API's `propagationPolicy` for the owner's dependents.
pub fn delete_with(
    st: &mut ClusterState,
    kind: &str,
    namespace_: &str,
    name: &str,
    propagation: Propagation,
    now: DateTime<Utc>,
) -> Result<String, ObjectError> {
    match kind {
        "namespace" => super::namespaces::delete_namespace(st, name, now),
        "service" => {
            st.delete_service(namespace_, name)?;
            Ok(format!("service \"{name}\" deleted"))
        }
        "pod" => {
            let mut pod = st
                .pods
                .iter_mut()
                .find(|p| {
                    p.metadata.name.as_deref() == Some(name) && namespace(&p.metadata) == namespace_
                })
                .ok_or_else(|| ObjectError::NotFound {
                    kind: "pods",
                    name: name.into(),
                })?;
            pod.metadata.deletion_timestamp = Some(time(now));
            Ok(format!("pod \"{name}\" deleted"))
        }
        "deployment" => {
            let i = st
                .deployments
                .iter()
                .position(|d| {
                    d.metadata.name.as_deref() == Some(name) && namespace(&d.metadata) == namespace_
                })
                .ok_or_else(|| ObjectError::NotFound {
                    kind: "deployments.apps",
                    name: name.into(),
                })?;
            let dep = st.deployments.remove(i);
            release_dependents(st, &dep.metadata, propagation, now);
            Ok(format!("deployment.apps \"{name}\" deleted"))
        }
        "replicaset" => {
            let i = st
                .replica_sets
                .iter()
                .position(|r| {
                    r.metadata.name.as_deref() == Some(name) && namespace(&r.metadata) == namespace_
                })
                .ok_or_else(|| ObjectError::NotFound {
                    kind: "replicasets.apps",
                    name: name.into(),
                })?;
            let rs = st.replica_sets.remove(i);
            release_dependents(st, &rs.metadata, propagation, now);
            Ok(format!("replicaset.apps \"{name}\" deleted"))
        }
        "secret" | "configmap" => {
            let (list_len, plural) = if kind == "secret" {
                let before = st.secrets.len();
                st.secrets.retain(|s| {
                    !(s.metadata.name.as_deref() == Some(name)
                        && namespace(&s.metadata) == namespace_)
                });
                (before - st.secrets.len(), "secrets")
            } else {
                let before = st.config_maps.len();
                st.config_maps.retain(|c| {
                    !(c.metadata.name.as_deref() == Some(name)
                        && namespace(&c.metadata) == namespace_)
                });
                (before - st.config_maps.len(), "configmaps")
            };
            if list_len == 0 {
                return Err(ObjectError::NotFound {
                    kind: plural,
                    name: name.into(),
                });
            }
            Ok(format!("{kind} \"{name}\" deleted"))
        }
        "serviceaccount" | "role" | "rolebinding" | "clusterrole" | "clusterrolebinding"
        | "networkpolicy" => {
            fn remove<T: k8s_openapi::Metadata<Ty = ObjectMeta> + Clone>(
                list: &mut Collection<T>,
                ns: &str,
                name: &str,
            ) -> usize {
                let before = list.len();
                list.retain(|x| {
                    !(x.metadata().name.as_deref() == Some(name) && namespace(x.metadata()) == ns)
                });
                before - list.len()
            }
            let (gone, plural) = match kind {
                "serviceaccount" => (
                    remove(&mut st.service_accounts, namespace_, name),
                    "serviceaccounts",
                ),
                "role" => (
                    remove(&mut st.roles, namespace_, name),
                    "roles.rbac.authorization.k8s.io",
                ),
                "rolebinding" => (
                    remove(&mut st.role_bindings, namespace_, name),
                    "rolebindings.rbac.authorization.k8s.io",
                ),
                "clusterrole" => (
                    remove(&mut st.cluster_roles, namespace_, name),
                    "clusterroles.rbac.authorization.k8s.io",
                ),
                "networkpolicy" => (
                    remove(&mut st.network_policies, namespace_, name),
                    "networkpolicies.networking.k8s.io",
                ),
                _ => (
                    remove(&mut st.cluster_role_bindings, namespace_, name),
                    "clusterrolebindings.rbac.authorization.k8s.io",
                ),
            };
            if gone == 0 {
                return Err(ObjectError::NotFound {
                    kind: plural,
                    name: name.into(),
                });
            }
            Ok(format!("{kind} \"{name}\" deleted"))
        }
        other => Err(ObjectError::Invalid(format!(
            "netlab cannot delete {other} objects"
        ))),
    }
}

/// One object: its canonical kind (service, deployment, pod, secret,
/// configmap), namespace and name.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// The object `kind` (canonical: service, deployment, pod, secret,
/// configmap) `namespace/name` as the API server returns it, for `edit`
/// and `patch`.
pub fn get_json(st: &ClusterState, target: &Target<'_>) -> Result<serde_json::Value, ObjectError> {
    let Target {
        kind,
        namespace: namespace_,
        name,
    } = *target;
    fn find<'a, T>(
        list: &'a Collection<T>,
        meta: impl Fn(&T) -> &ObjectMeta,
        ns: &str,
        name: &str,
    ) -> Option<&'a T> {
        list.iter()
            .find(|x| meta(x).name.as_deref() == Some(name) && namespace(meta(x)) == ns)
    }
    let not_found = |plural: &'static str| ObjectError::NotFound {
        kind: plural,
        name: name.into(),
    };
    let value = match kind {
        "namespace" => serde_json::to_value(
            st.namespace_objects()
                .into_iter()
                .find(|n| n.metadata.name.as_deref() == Some(name))
                .ok_or_else(|| not_found("namespaces"))?,
        ),
        "service" => serde_json::to_value(
            find(&st.services, |x| &x.metadata, namespace_, name)
                .ok_or_else(|| not_found("services"))?,
        ),
        "deployment" => serde_json::to_value(
            find(&st.deployments, |x| &x.metadata, namespace_, name)
                .ok_or_else(|| not_found("deployments.apps"))?,
        ),
        "pod" => serde_json::to_value(
            find(&st.pods, |x| &x.metadata, namespace_, name).ok_or_else(|| not_found("pods"))?,
        ),
        "node" => serde_json::to_value(
            st.nodes
                .iter()
                .find(|n| n.metadata.name.as_deref() == Some(name))
                .ok_or_else(|| not_found("nodes"))?,
        ),
        "replicaset" => serde_json::to_value(
            find(&st.replica_sets, |x| &x.metadata, namespace_, name)
                .ok_or_else(|| not_found("replicasets.apps"))?,
        ),
        "secret" => serde_json::to_value(
            find(&st.secrets, |x| &x.metadata, namespace_, name)
                .ok_or_else(|| not_found("secrets"))?,
        ),
        "configmap" => serde_json::to_value(
            find(&st.config_maps, |x| &x.metadata, namespace_, name)
                .ok_or_else(|| not_found("configmaps"))?,
        ),
        "serviceaccount" => serde_json::to_value(
            find(&st.service_accounts, |x| &x.metadata, namespace_, name)
                .ok_or_else(|| not_found("serviceaccounts"))?,
        ),
        "role" => serde_json::to_value(
            find(&st.roles, |x| &x.metadata, namespace_, name)
                .ok_or_else(|| not_found("roles.rbac.authorization.k8s.io"))?,
        ),
        "rolebinding" => serde_json::to_value(
            find(&st.role_bindings, |x| &x.metadata, namespace_, name)
                .ok_or_else(|| not_found("rolebindings.rbac.authorization.k8s.io"))?,
        ),
        "clusterrole" => serde_json::to_value(
            find(&st.cluster_roles, |x| &x.metadata, namespace_, name)
                .ok_or_else(|| not_found("clusterroles.rbac.authorization.k8s.io"))?,
        ),
        "clusterrolebinding" => serde_json::to_value(
            find(&st.cluster_role_bindings, |x| &x.metadata, namespace_, name)
                .ok_or_else(|| not_found("clusterrolebindings.rbac.authorization.k8s.io"))?,
        ),
        "networkpolicy" => serde_json::to_value(
            find(&st.network_policies, |x| &x.metadata, namespace_, name)
                .ok_or_else(|| not_found("networkpolicies.networking.k8s.io"))?,
        ),
        other => {
            return Err(ObjectError::Invalid(format!(
                "netlab cannot edit or patch {other} objects"
            )))
        }
    };
    Ok(value.expect("objects serialize"))
}

/// The metadata of a stored object, to change what only the API server
/// sets (its managedFields).
pub fn meta_mut<'a>(st: &'a mut ClusterState, target: &Target<'_>) -> Option<&'a mut ObjectMeta> {
    fn find<'a, T: Clone + k8s_openapi::Metadata<Ty = ObjectMeta>>(
        list: &'a mut Collection<T>,
        ns: &str,
        name: &str,
    ) -> Option<&'a mut ObjectMeta> {
        let i = list.iter().position(|x| {
            x.metadata().name.as_deref() == Some(name) && namespace(x.metadata()) == ns
        })?;
        list.get_mut(i).map(|x| x.metadata_mut())
    }
    let (ns, name) = (target.namespace, target.name);
    match target.kind {
        "namespace" => {
            let i = st
                .namespaces
                .iter()
                .position(|n| n.metadata.name.as_deref() == Some(name))?;
            st.namespaces.get_mut(i).map(|x| &mut x.metadata)
        }
        "service" => find(&mut st.services, ns, name),
        "deployment" => find(&mut st.deployments, ns, name),
        "pod" => find(&mut st.pods, ns, name),
        "node" => find(&mut st.nodes, "default", name),
        "replicaset" => find(&mut st.replica_sets, ns, name),
        "secret" => find(&mut st.secrets, ns, name),
        "configmap" => find(&mut st.config_maps, ns, name),
        "serviceaccount" => find(&mut st.service_accounts, ns, name),
        "role" => find(&mut st.roles, ns, name),
        "rolebinding" => find(&mut st.role_bindings, ns, name),
        "clusterrole" => find(&mut st.cluster_roles, ns, name),
        "clusterrolebinding" => find(&mut st.cluster_role_bindings, ns, name),
        "networkpolicy" => find(&mut st.network_policies, ns, name),
        _ => None,
    }
}

/// Puts an edited or patched object back: the API server's update, with
/// the same validation as `apply`. `verb` is kubectl's ("patched",
/// "edited"); an update that changes nothing says "(no change)".
pub fn update_json(
    st: &mut ClusterState,
    target: &Target<'_>,
    value: serde_json::Value,
    verb: &str,
    now: DateTime<Utc>,
    rng: &mut impl rand::Rng,
) -> Result<String, ObjectError> {
    let Target {
        kind,
        namespace: namespace_,
        name,
    } = *target;
    let bad =
        |e: serde_json::Error| ObjectError::Invalid(format!("the edited {kind} is not valid: {e}"));
    let meta: ObjectMeta =
        serde_json::from_value(value.get("metadata").cloned().unwrap_or_default()).map_err(bad)?;
    let cluster_wide = matches!(kind, "namespace" | "node");
    if meta.name.as_deref() != Some(name) || (!cluster_wide && namespace(&meta) != namespace_) {
        return Err(ObjectError::Invalid(format!(
            "{kind} {name:?}: metadata.name and metadata.namespace cannot be changed (create a new object instead)"
        )));
    }
    let line = match kind {
        "namespace" => super::namespaces::apply_namespace(
            st,
            serde_json::from_value(value).map_err(bad)?,
            false,
            now,
            rng,
        )?,
        "service" => apply_service(
            st,
            serde_json::from_value(value).map_err(bad)?,
            Mode::Apply,
            now,
            rng,
        )?,
        "deployment" => apply_deployment(
            st,
            serde_json::from_value(value).map_err(bad)?,
            Mode::Apply,
            now,
            rng,
        )?,
        "replicaset" => update_replica_set(st, serde_json::from_value(value).map_err(bad)?)?,
        "node" => super::nodes::update_node(st, serde_json::from_value(value).map_err(bad)?, now)?,
        "pod" => {
            let pod: Pod = serde_json::from_value(value).map_err(bad)?;
            let current = st.pod(namespace_, name).and_then(|p| p.spec.clone());
            if pod.spec != current {
                return Err(ObjectError::Invalid(format!(
                    "Pod {name:?} is invalid: spec: Forbidden: pod updates may not change fields other than labels and annotations here (delete the pod and create it again)"
                )));
            }
            apply_pod(st, pod, Mode::Apply, now, rng)?
        }
        "secret" => apply_secret(
            st,
            serde_json::from_value(value).map_err(bad)?,
            Mode::Apply,
            now,
            rng,
        )?,
        "configmap" => apply_config_map(
            st,
            serde_json::from_value(value).map_err(bad)?,
            Mode::Apply,
            now,
            rng,
        )?,
        "serviceaccount" | "role" | "rolebinding" | "clusterrole" | "clusterrolebinding" => {
            use super::access::AccessObject as A;
            let mut obj = match kind {
                "serviceaccount" => A::ServiceAccount(serde_json::from_value(value).map_err(bad)?),
                "role" => A::Role(serde_json::from_value(value).map_err(bad)?),
                "rolebinding" => A::RoleBinding(serde_json::from_value(value).map_err(bad)?),
                "clusterrole" => A::ClusterRole(serde_json::from_value(value).map_err(bad)?),
                _ => A::ClusterRoleBinding(serde_json::from_value(value).map_err(bad)?),
            };
            obj.validate().map_err(ObjectError::Invalid)?;
            apply_access(st, obj, Mode::Apply, now, rng)?
        }
        "networkpolicy" => apply_network_policy(
            st,
            serde_json::from_value(value).map_err(bad)?,
            Mode::Apply,
            now,
            rng,
        )?,
        other => {
            return Err(ObjectError::Invalid(format!(
                "netlab cannot edit or patch {other} objects"
            )))
        }
    };
    st.reconcile_workloads(now, rng)?;
    // "service/x configured" → "service/x patched"; "unchanged" → "(no change)".
    let (object, outcome) = line.rsplit_once(' ').unwrap_or((line.as_str(), ""));
    Ok(match outcome {
        "unchanged" => format!("{object} {verb} (no change)"),
        _ => format!("{object} {verb}"),
    })
}

type Labels = BTreeMap<String, String>;

/// What `kubectl expose` reads from the exposed object.
pub struct ExposeRequest<'a> {
    pub kind: &'a str,
    pub name: &'a str,
    pub namespace: &'a str,
    pub service_name: Option<&'a str>,
    pub port: Option<i32>,
    pub target_port: Option<&'a str>,
    pub protocol: Option<&'a str>,
    pub type_: Option<&'a str>,
    pub selector: Option<BTreeMap<String, String>>,
}

/// `kubectl expose`: a Service selecting the object's pods, with its ports.
///
/// `source` is the exposed object (`req.kind`) as the API returned it: as
/// kubectl, the client reads it and creates the Service it makes.
pub fn expose(source: &serde_json::Value, req: &ExposeRequest<'_>) -> Result<Service, ObjectError> {
    let invalid =
        |e: serde_json::Error| ObjectError::Invalid(format!("{} {}: {e}", req.kind, req.name));
    // (selector, labels, ports (port, protocol)) of the exposed object.
    let (selector, labels, ports): (Labels, Option<Labels>, Vec<(i32, String)>) = match req.kind {
        "deployment" => {
            let d: Deployment = serde_json::from_value(source.clone()).map_err(invalid)?;
            let spec = d.spec.clone().unwrap_or_default();
            let ports =
                container_ports(spec.template.spec.iter().flat_map(|s| s.containers.iter()));
            (
                spec.selector.match_labels.unwrap_or_default(),
                d.metadata.labels.clone(),
                ports,
            )
        }
        "pod" => {
            let p: Pod = serde_json::from_value(source.clone()).map_err(invalid)?;
            let ports = container_ports(p.spec.iter().flat_map(|s| s.containers.iter()));
            let labels = p.metadata.labels.clone().unwrap_or_default();
            if labels.is_empty() && req.selector.is_none() {
                return Err(ObjectError::Invalid(format!(
                        "couldn't retrieve selectors via --selector flag or introspection: the pod {} has no labels",
                        req.name
                    )));
            }
            (labels.clone(), Some(labels), ports)
        }
        "service" => {
            let s: Service = serde_json::from_value(source.clone()).map_err(invalid)?;
            let spec = s.spec.clone().unwrap_or_default();
            let ports = spec
                .ports
                .iter()
                .flatten()
                .map(|p| (p.port, p.protocol.clone().unwrap_or_else(|| "TCP".into())))
                .collect();
            (
                spec.selector.unwrap_or_default(),
                s.metadata.labels.clone(),
                ports,
            )
        }
        other => {
            return Err(ObjectError::Invalid(format!(
                "cannot expose a {other}: expose a deployment, pod or service"
            )))
        }
    };
    let selector = req.selector.clone().unwrap_or(selector);
    let mut service_ports: Vec<ServicePort> = match req.port {
        Some(port) => vec![ServicePort {
            port,
            protocol: Some(
                req.protocol
                    .map(String::from)
                    .or_else(|| ports.first().map(|p| p.1.clone()))
                    .unwrap_or_else(|| "TCP".into()),
            ),
            ..Default::default()
        }],
        None => {
            if ports.is_empty() {
                return Err(ObjectError::Invalid(format!(
                    "couldn't find port via --port flag or introspection: {} {} declares no containerPort",
                    req.kind, req.name
                )));
            }
            let multi = ports.len() > 1;
            ports
                .iter()
                .enumerate()
                .map(|(i, (port, proto))| ServicePort {
                    name: multi.then(|| format!("port-{}", i + 1)),
                    port: *port,
                    protocol: Some(
                        req.protocol
                            .map(String::from)
                            .unwrap_or_else(|| proto.clone()),
                    ),
                    ..Default::default()
                })
                .collect()
        }
    };
    for p in &mut service_ports {
        p.target_port = Some(match req.target_port {
            Some(t) => match t.parse::<i32>() {
                Ok(n) => IntOrString::Int(n),
                Err(_) => IntOrString::String(t.to_string()),
            },
            None => IntOrString::Int(p.port),
        });
    }
    let service_name = req.service_name.unwrap_or(req.name).to_string();
    Ok(Service {
        metadata: ObjectMeta {
            name: Some(service_name.clone()),
            namespace: Some(req.namespace.to_string()),
            labels: labels.filter(|l| !l.is_empty()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(selector),
            ports: Some(service_ports),
            type_: req.type_.map(String::from),
            ..Default::default()
        }),
        status: None,
    })
}

fn container_ports<'a>(
    containers: impl Iterator<Item = &'a k8s_openapi::api::core::v1::Container>,
) -> Vec<(i32, String)> {
    let mut out: Vec<(i32, String)> = Vec::new();
    for c in containers {
        for p in c.ports.iter().flatten() {
            let entry = (
                p.container_port,
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            );
            if !out.contains(&entry) {
                out.push(entry);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::HostInfo;
    use rand::SeedableRng;

    fn lab(replicas: i32) -> ClusterState {
        let spec = crate::lab::load_str(
            std::path::Path::new("t.yaml"),
            &format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: my-nginx\nspec:\n  selector:\n    matchLabels:\n      run: my-nginx\n  replicas: {replicas}\n  template:\n    metadata:\n      labels:\n        run: my-nginx\n    spec:\n      containers:\n      - name: my-nginx\n        image: nginx\n        ports:\n        - containerPort: 80\n"),
            &Default::default(),
        )
        .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        ClusterState::plan(&spec, &HostInfo::default(), Utc::now(), &mut rng).unwrap()
    }

    /// Live pods of the default namespace (kube-system has the DNS pod).
    fn live(st: &ClusterState) -> usize {
        st.pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| state::namespace(&p.metadata) == "default")
            .count()
    }

    #[test]
    fn expose_deployment_like_the_tutorial() {
        let st = lab(2);
        let req = ExposeRequest {
            kind: "deployment",
            name: "my-nginx",
            namespace: "default",
            service_name: None,
            port: None,
            target_port: None,
            protocol: None,
            type_: None,
            selector: None,
        };
        let source = serde_json::to_value(&st.deployments[0]).unwrap();
        let s = expose(&source, &req).unwrap();
        assert_eq!(s.metadata.name.as_deref(), Some("my-nginx"));
        let sp = s.spec.as_ref().unwrap();
        assert_eq!(sp.ports.as_ref().unwrap()[0].port, 80);
        assert_eq!(sp.selector.as_ref().unwrap()["run"], "my-nginx");
        let pod = serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": []}});
        let req = ExposeRequest { kind: "pod", ..req };
        assert!(expose(&pod, &req)
            .unwrap_err()
            .to_string()
            .contains("no labels"));
    }

    #[test]
    fn scale_down_to_zero_and_up_makes_new_pods() {
        let mut st = lab(2);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let old: Vec<String> = st
            .pods
            .iter()
            .filter(|p| state::namespace(&p.metadata) == "default")
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        scale(&mut st, "default", "my-nginx", 0, Utc::now(), &mut rng).unwrap();
        assert_eq!(live(&st), 0);
        st.pods.retain(|p| p.metadata.deletion_timestamp.is_none()); // the controller removed them
        scale(&mut st, "default", "my-nginx", 5, Utc::now(), &mut rng).unwrap();
        assert_eq!(live(&st), 5);
        assert!(st
            .pods
            .iter()
            .all(|p| !old.contains(p.metadata.name.as_ref().unwrap())));
        assert!(scale(&mut st, "default", "nope", 1, Utc::now(), &mut rng).is_err());
        assert!(scale(&mut st, "default", "my-nginx", -1, Utc::now(), &mut rng).is_err());
    }

    #[test]
    fn delete_deployment_marks_its_pods() {
        let mut st = lab(3);
        delete(&mut st, "deployment", "default", "my-nginx", Utc::now()).unwrap();
        assert_eq!(live(&st), 0);
        assert!(delete(&mut st, "service", "default", "nope", Utc::now()).is_err());
    }

    /// A lab file's NetworkPolicy is stored defaulted; an invalid one stops
    /// `up` at its file and line, and its `apply` changes nothing; patch and
    /// delete find it by its kind.
    #[test]
    fn network_policies_are_stored_defaulted_updated_and_deleted() {
        const NP: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: db\nspec:\n  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - ports: [{port: 5432}]\n";
        let file = std::path::Path::new("np.yaml");
        let spec = crate::lab::load_str(file, NP, &Default::default()).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let now = Utc::now();
        let mut st = ClusterState::plan(&spec, &HostInfo::default(), now, &mut rng).unwrap();
        let target = Target {
            kind: "networkpolicy",
            namespace: "default",
            name: "db",
        };
        let v = get_json(&st, &target).unwrap();
        assert_eq!(v["spec"]["ingress"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(v["spec"]["policyTypes"], serde_json::json!(["Ingress"]));
        assert!(v["metadata"]["uid"].is_string());
        assert_eq!(
            apply(&mut st, &spec, Mode::Apply, now, &mut rng).unwrap(),
            ["networkpolicy.networking.k8s.io/db unchanged"]
        );
        assert!(matches!(
            apply(&mut st, &spec, Mode::Create, now, &mut rng),
            Err(ObjectError::AlreadyExists { .. })
        ));

        let bad = NP.replace("5432}", "5432, endPort: 80}");
        let bad = crate::lab::load_str(file, &bad, &Default::default()).unwrap();
        let e = ClusterState::plan(&bad, &HostInfo::default(), now, &mut rng).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("np.yaml:1: NetworkPolicy \"db\" is invalid"),
            "{e}"
        );
        let e = apply(&mut st, &bad, Mode::Apply, now, &mut rng).unwrap_err();
        assert_eq!(e.to_string(), "NetworkPolicy \"db\" is invalid: spec.ingress[0].ports[0].endPort: Invalid value: 5432: must be greater than or equal to `port`");
        assert_eq!(get_json(&st, &target).unwrap(), v, "unchanged");

        let mut egress = v.clone();
        egress["spec"]["egress"] =
            serde_json::json!([{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]);
        egress["spec"]["policyTypes"] = serde_json::Value::Null;
        update_json(&mut st, &target, egress, "patched", now, &mut rng).unwrap();
        let after = get_json(&st, &target).unwrap();
        assert_eq!(
            after["spec"]["policyTypes"],
            serde_json::json!(["Ingress", "Egress"])
        );
        assert_eq!(after["metadata"]["uid"], v["metadata"]["uid"]);

        assert_eq!(
            delete(&mut st, "networkpolicy", "default", "db", now).unwrap(),
            "networkpolicy \"db\" deleted"
        );
        assert!(st.network_policies.is_empty());
        assert!(delete(&mut st, "networkpolicy", "default", "db", now).is_err());
    }
}
