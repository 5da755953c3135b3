//! Who pods are to the lab's API, and what anyone may do there, as
//! Kubernetes has it: ServiceAccounts, RBAC's Roles, ClusterRoles and their
//! bindings, and what the control plane does with them on its own:
//!
//! - the ServiceAccount admission of a pod (`admit_pod`): its
//!   `serviceAccountName` defaults to `default`, and unless
//!   `automountServiceAccountToken` is false (the pod's, else its
//!   ServiceAccount's) it gets kube-apiserver's `kube-api-access-XXXXX`
//!   projected volume (a token, the lab's CA from the `kube-root-ca.crt`
//!   ConfigMap, the namespace) mounted at
//!   `/var/run/secrets/kubernetes.io/serviceaccount` in every container;
//! - what kube-controller-manager and kube-apiserver keep in place
//!   (`ensure`): a `default` ServiceAccount and a `kube-root-ca.crt`
//!   ConfigMap in every namespace, and the bootstrap ClusterRoles and
//!   ClusterRoleBindings (`cluster-admin` for `system:masters`, discovery
//!   for everyone signed in, `view`, `edit`, `admin`).
//!
//! Pure: `api::rbac` decides requests from these objects; `api::tokens`
//! signs the tokens the kubelet writes.

use super::collection::Collection;
use super::state::{self, time, ClusterState};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::KeyToPath;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapProjection, DownwardAPIProjection, DownwardAPIVolumeFile,
    ObjectFieldSelector, Pod, PodSpec, ProjectedVolumeSource, ServiceAccount,
    ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef,
    Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use std::collections::BTreeMap;

/// Where the kubelet mounts a pod's API credentials.
pub const TOKEN_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The ConfigMap of the lab's CA in each namespace.
pub const ROOT_CA: &str = "kube-root-ca.crt";
pub const DEFAULT_ACCOUNT: &str = "default";
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// One of the access kinds a lab file or a write may hold.
#[derive(Debug, Clone, PartialEq)]
pub enum AccessObject {
    ServiceAccount(ServiceAccount),
    Role(Role),
    RoleBinding(RoleBinding),
    ClusterRole(ClusterRole),
    ClusterRoleBinding(ClusterRoleBinding),
}

impl AccessObject {
    pub fn kind(&self) -> &'static str {
        match self {
            AccessObject::ServiceAccount(_) => "ServiceAccount",
            AccessObject::Role(_) => "Role",
            AccessObject::RoleBinding(_) => "RoleBinding",
            AccessObject::ClusterRole(_) => "ClusterRole",
            AccessObject::ClusterRoleBinding(_) => "ClusterRoleBinding",
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            AccessObject::ServiceAccount(o) => &o.metadata,
            AccessObject::Role(o) => &o.metadata,
            AccessObject::RoleBinding(o) => &o.metadata,
            AccessObject::ClusterRole(o) => &o.metadata,
            AccessObject::ClusterRoleBinding(o) => &o.metadata,
        }
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            AccessObject::ServiceAccount(o) => &mut o.metadata,
            AccessObject::Role(o) => &mut o.metadata,
            AccessObject::RoleBinding(o) => &mut o.metadata,
            AccessObject::ClusterRole(o) => &mut o.metadata,
            AccessObject::ClusterRoleBinding(o) => &mut o.metadata,
        }
    }

    pub fn namespaced(&self) -> bool {
        !matches!(
            self,
            AccessObject::ClusterRole(_) | AccessObject::ClusterRoleBinding(_)
        )
    }

    /// kube-apiserver's validation of these kinds (a ServiceAccount's name
    /// is a DNS subdomain; RBAC's names are path segments, so
    /// `system:discovery` is one), with the namespace defaulted or, for
    /// the cluster-wide kinds, dropped.
    pub fn validate(&mut self) -> Result<(), String> {
        let namespaced = self.namespaced();
        let kind = self.kind();
        let meta = self.meta_mut();
        let name = meta.name.clone().unwrap_or_default();
        if name.is_empty() {
            return Err("metadata.name: Required value".into());
        }
        if namespaced {
            meta.namespace.get_or_insert_with(|| "default".into());
        } else {
            meta.namespace = None;
        }
        let bad_path = name == "." || name == ".." || name.contains(['/', '%']);
        match self {
            AccessObject::ServiceAccount(_) => crate::lab::validate::dns_subdomain(&name)
                .map_err(|m| format!("metadata.name: Invalid value: {name:?}: {m}")),
            _ if bad_path => Err(format!(
                "metadata.name: Invalid value: {name:?}: may not be '.' or '..' or contain '/' or '%'"
            )),
            AccessObject::Role(r) => rules(r.rules.iter().flatten(), false),
            AccessObject::ClusterRole(r) => rules(r.rules.iter().flatten(), true),
            AccessObject::RoleBinding(b) => binding(&b.role_ref, b.subjects.iter().flatten(), true),
            AccessObject::ClusterRoleBinding(b) => {
                binding(&b.role_ref, b.subjects.iter().flatten(), false)
            }
        }
        .map_err(|m| format!("{kind} {name:?} is invalid: {m}"))
    }
}

fn rules<'a>(rules: impl Iterator<Item = &'a PolicyRule>, cluster: bool) -> Result<(), String> {
    for (i, r) in rules.enumerate() {
        if r.verbs.is_empty() {
            return Err(format!(
                "rules[{i}].verbs: Required value: verbs must contain at least one value"
            ));
        }
        let urls = r.non_resource_urls.as_ref().is_some_and(|u| !u.is_empty());
        let resources = r.resources.as_ref().is_some_and(|u| !u.is_empty());
        if urls && !cluster {
            return Err(format!("rules[{i}].nonResourceURLs: Invalid value: namespaced rules cannot apply to non-resource URLs"));
        }
        if urls && resources {
            return Err(format!("rules[{i}].nonResourceURLs: Invalid value: rules cannot apply to both regular resources and non-resource URLs"));
        }
        if !urls && r.api_groups.as_ref().is_none_or(|g| g.is_empty()) {
            return Err(format!("rules[{i}].apiGroups: Required value: resource rules must supply at least one api group"));
        }
        if !urls && !resources {
            return Err(format!("rules[{i}].resources: Required value: resource rules must supply at least one resource"));
        }
    }
    Ok(())
}

fn binding<'a>(
    role: &RoleRef,
    subjects: impl Iterator<Item = &'a Subject>,
    namespaced: bool,
) -> Result<(), String> {
    if role.api_group != RBAC_GROUP {
        return Err(format!(
            "roleRef.apiGroup: Unsupported value: {:?}: supported values: \"{RBAC_GROUP}\"",
            role.api_group
        ));
    }
    match role.kind.as_str() {
        "ClusterRole" => {}
        "Role" if namespaced => {}
        k => {
            return Err(format!(
                "roleRef.kind: Unsupported value: {k:?}: supported values: {}",
                if namespaced {
                    "\"Role\", \"ClusterRole\""
                } else {
                    "\"ClusterRole\""
                }
            ))
        }
    }
    if role.name.is_empty() {
        return Err("roleRef.name: Required value".into());
    }
    for (i, s) in subjects.enumerate() {
        match s.kind.as_str() {
            "ServiceAccount" if s.namespace.as_deref().unwrap_or("").is_empty() && !namespaced => {
                return Err(format!("subjects[{i}].namespace: Required value"))
            }
            "ServiceAccount" | "User" | "Group" => {}
            k => {
                return Err(format!(
                    "subjects[{i}].kind: Unsupported value: {k:?}: supported values: \"ServiceAccount\", \"User\", \"Group\""
                ))
            }
        }
        if s.name.is_empty() {
            return Err(format!("subjects[{i}].name: Required value"));
        }
    }
    Ok(())
}

/// A volume name's suffix as kube-apiserver makes it (five of
/// `bcdfghjklmnpqrstvwxz2456789`), from the pod's uid so that the same
/// pod is admitted the same way.
fn suffix(uid: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h: u64 = 0xcbf29ce484222325;
    for b in uid.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    (0..5)
        .map(|i| ALPHABET[((h >> (i * 8)) % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

/// kube-apiserver's ServiceAccount admission refuses a pod (in namespace
/// `ns`, of `spec`) whose account does not exist: this is its reason, what
/// follows `pods "NAME" is forbidden: `. Each namespace's `default` account
/// is the lab's own ([`ensure`] makes it with the namespace), so only other
/// names can be missing.
pub fn missing_account(
    ns: &str,
    spec: Option<&PodSpec>,
    accounts: &Collection<ServiceAccount>,
) -> Option<String> {
    let spec = spec?;
    let name = spec
        .service_account_name
        .as_deref()
        .filter(|n| !n.is_empty())
        .or_else(|| spec.service_account.as_deref().filter(|n| !n.is_empty()))?;
    let exists = || {
        accounts.iter().any(|a| {
            a.metadata.name.as_deref() == Some(name) && state::namespace(&a.metadata) == ns
        })
    };
    if name == DEFAULT_ACCOUNT || exists() {
        return None;
    }
    Some(format!(
        "error looking up service account {ns}/{name}: serviceaccount \"{name}\" not found"
    ))
}

/// kube-apiserver's ServiceAccount admission of a new pod.
pub fn admit_pod(pod: &mut Pod, accounts: &Collection<ServiceAccount>) {
    let ns = state::namespace(&pod.metadata).to_string();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    let account = spec
        .service_account_name
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| spec.service_account.clone().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| DEFAULT_ACCOUNT.into());
    spec.service_account_name = Some(account.clone());
    spec.service_account = Some(account.clone());
    let automount = spec.automount_service_account_token.or_else(|| {
        accounts
            .iter()
            .find(|a| {
                a.metadata.name.as_deref() == Some(account.as_str())
                    && state::namespace(&a.metadata) == ns
            })
            .and_then(|a| a.automount_service_account_token)
    });
    if automount == Some(false) {
        return;
    }
    let mounted = |mounts: &Option<Vec<VolumeMount>>| {
        mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path.trim_end_matches('/') == TOKEN_MOUNT)
    };
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    if containers.clone().all(|c| mounted(&c.volume_mounts)) {
        return;
    }
    let name = format!("kube-api-access-{}", suffix(&uid));
    let mount = VolumeMount {
        name: name.clone(),
        mount_path: TOKEN_MOUNT.into(),
        read_only: Some(true),
        ..Default::default()
    };
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        if !mounted(&c.volume_mounts) {
            c.volume_mounts
                .get_or_insert_with(Vec::new)
                .push(mount.clone());
        }
    }
    spec.volumes.get_or_insert_with(Vec::new).push(Volume {
        name,
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o644),
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        expiration_seconds: Some(3607),
                        path: "token".into(),
                        audience: None,
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: ROOT_CA.into(),
                        items: Some(vec![KeyToPath {
                            key: "ca.crt".into(),
                            path: "ca.crt".into(),
                            mode: None,
                        }]),
                        optional: None,
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".into(),
                            field_ref: Some(ObjectFieldSelector {
                                api_version: Some("v1".into()),
                                field_path: "metadata.namespace".into(),
                            }),
                            ..Default::default()
                        }]),
                    }),
                    ..Default::default()
                },
            ]),
        }),
        ..Default::default()
    });
}

fn meta(
    name: &str,
    namespace: Option<&str>,
    now: DateTime<Utc>,
    rng: &mut impl rand::Rng,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(String::from),
        creation_timestamp: Some(time(now)),
        uid: Some(state::uid(rng)),
        ..Default::default()
    }
}

fn bootstrap(name: &str, now: DateTime<Utc>, rng: &mut impl rand::Rng) -> ObjectMeta {
    ObjectMeta {
        labels: Some(
            [(
                "kubernetes.io/bootstrapping".to_string(),
                "rbac-defaults".to_string(),
            )]
            .into(),
        ),
        annotations: Some(
            [(
                "rbac.authorization.kubernetes.io/autoupdate".to_string(),
                "true".to_string(),
            )]
            .into(),
        ),
        ..meta(name, None, now, rng)
    }
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let own = |l: &[&str]| Some(l.iter().map(|s| s.to_string()).collect());
    PolicyRule {
        api_groups: own(groups),
        resources: own(resources),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn urls(paths: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        non_resource_urls: Some(paths.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];

/// The label a ClusterRole carries to be aggregated into another
/// (`rbac.authorization.k8s.io/aggregate-to-view: "true"`).
const AGGREGATE_TO: &str = "rbac.authorization.k8s.io/aggregate-to-";

/// A bootstrap ClusterRole: its rules, the roles it is aggregated into,
/// and whether it is itself an aggregate (of the roles labelled for it).
struct Bootstrap {
    name: &'static str,
    rules: Vec<PolicyRule>,
    into: &'static [&'static str],
    aggregate: bool,
}

/// kube-apiserver's bootstrap ClusterRoles, for what this API serves:
/// `admin`, `edit` and `view` are aggregates, as in Kubernetes, of the
/// `system:aggregate-to-*` roles (and `edit` of `view`, `admin` of
/// `edit`), so a ClusterRole labelled `aggregate-to-view` extends them.
fn cluster_roles() -> Vec<Bootstrap> {
    let viewed = vec![
        rule(
            &[""],
            &[
                "configmaps",
                "endpoints",
                "events",
                "pods",
                "pods/log",
                "pods/status",
                "serviceaccounts",
                "services",
                "services/status",
                "namespaces",
            ],
            READ,
        ),
        rule(
            &["apps"],
            &[
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
            ],
            READ,
        ),
        rule(&["discovery.k8s.io"], &["endpointslices"], READ),
        rule(&["networking.k8s.io"], &["networkpolicies"], READ),
    ];
    let edit = vec![
        rule(
            &[""],
            &[
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "secrets",
                "services/proxy",
            ],
            READ,
        ),
        rule(
            &[""],
            &["pods/attach", "pods/exec", "pods/portforward", "pods/proxy"],
            &["create", "delete", "deletecollection", "patch", "update"],
        ),
        rule(
            &[""],
            &[
                "configmaps",
                "endpoints",
                "pods",
                "secrets",
                "serviceaccounts",
                "services",
            ],
            WRITE,
        ),
        rule(&[""], &["serviceaccounts/token"], &["create"]),
        rule(
            &["apps"],
            &[
                "deployments",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
            ],
            WRITE,
        ),
        rule(&["discovery.k8s.io"], &["endpointslices"], WRITE),
        rule(&["networking.k8s.io"], &["networkpolicies"], WRITE),
    ];
    let admin = vec![
        rule(
            &[RBAC_GROUP],
            &["rolebindings", "roles"],
            &[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ],
        ),
        rule(
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews"],
            &["create"],
        ),
    ];
    let aggregates = [
        ("admin", &[][..]),
        ("edit", &["admin"][..]),
        ("view", &["edit"][..]),
    ]
    .map(|(name, into)| Bootstrap {
        name,
        rules: Vec::new(),
        into,
        aggregate: true,
    });
    let parts = [
        ("system:aggregate-to-admin", admin, &["admin"][..]),
        ("system:aggregate-to-edit", edit, &["edit"][..]),
        ("system:aggregate-to-view", viewed, &["view"][..]),
    ]
    .map(|(name, rules, into)| Bootstrap {
        name,
        rules,
        into,
        aggregate: false,
    });
    let plain = |(name, rules)| Bootstrap {
        name,
        rules,
        into: &[],
        aggregate: false,
    };
    let mut all: Vec<Bootstrap> = aggregates.into_iter().chain(parts).collect();
    all.extend(
        [
            (
                "cluster-admin",
                vec![rule(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])],
            ),
            (
                "system:discovery",
                vec![urls(
                    &[
                        "/api",
                        "/api/*",
                        "/apis",
                        "/apis/*",
                        "/healthz",
                        "/livez",
                        "/openapi",
                        "/openapi/*",
                        "/readyz",
                        "/version",
                        "/version/",
                    ],
                    &["get"],
                )],
            ),
            (
                "system:auth-delegator",
                vec![
                    rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                    rule(
                        &["authorization.k8s.io"],
                        &["subjectaccessreviews"],
                        &["create"],
                    ),
                ],
            ),
            (
                "system:basic-user",
                vec![
                    rule(
                        &["authorization.k8s.io"],
                        &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                        &["create"],
                    ),
                    rule(
                        &["authentication.k8s.io"],
                        &["selfsubjectreviews"],
                        &["create"],
                    ),
                ],
            ),
            (
                "system:public-info-viewer",
                vec![urls(
                    &["/healthz", "/livez", "/readyz", "/version", "/version/"],
                    &["get"],
                )],
            ),
        ]
        .map(plain),
    );
    all
}

/// Whether `labels` match a LabelSelector (matchLabels and
/// matchExpressions; an empty selector matches nothing here, as the
/// aggregation controller ignores it).
fn selects(sel: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let empty = sel.match_labels.as_ref().is_none_or(|l| l.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty());
    !empty && super::selector::label_selector_selects(sel, labels)
}

/// The ClusterRole aggregation controller: a ClusterRole with an
/// `aggregationRule` has the rules of every ClusterRole its selectors
/// match (by name, each rule once), made again whenever they change.
/// Returns whether one changed.
pub fn aggregate(st: &mut ClusterState) -> bool {
    let mut changed = false;
    // An aggregate may be part of another (view into edit into admin):
    // again until nothing moves, bounded against a cycle.
    for _ in 0..8 {
        let mut moved = false;
        for i in 0..st.cluster_roles.len() {
            let Some(rule) = st.cluster_roles[i].aggregation_rule.as_ref() else {
                continue;
            };
            let selectors = rule.cluster_role_selectors.as_deref().unwrap_or_default();
            let me = st.cluster_roles[i].metadata.name.clone();
            let mut parts: Vec<&ClusterRole> = st
                .cluster_roles
                .iter()
                .filter(|r| r.metadata.name != me)
                .filter(|r| {
                    selectors
                        .iter()
                        .any(|s| selects(s, r.metadata.labels.as_ref()))
                })
                .collect();
            parts.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            let mut rules: Vec<PolicyRule> = Vec::new();
            for r in parts.iter().flat_map(|p| p.rules.iter().flatten()) {
                if !rules.contains(r) {
                    rules.push(r.clone());
                }
            }
            if st.cluster_roles[i].rules.as_ref() != Some(&rules) {
                st.cluster_roles[i].rules = Some(rules);
                moved = true;
            }
        }
        changed |= moved;
        if !moved {
            break;
        }
    }
    changed
}

fn cluster_role_bindings() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        ("cluster-admin", &["system:masters"]),
        ("system:discovery", &["system:authenticated"]),
        ("system:basic-user", &["system:authenticated"]),
        (
            "system:public-info-viewer",
            &["system:authenticated", "system:unauthenticated"],
        ),
    ]
}

/// What the control plane keeps in place: the bootstrap policy (made when
/// missing, as kube-apiserver does at each start), and in every namespace
/// a `default` ServiceAccount and, once the lab has a CA (`ca`), the
/// `kube-root-ca.crt` ConfigMap holding it. Returns whether it changed
/// anything.
pub fn ensure(
    st: &mut ClusterState,
    ca: Option<&str>,
    now: DateTime<Utc>,
    rng: &mut impl rand::Rng,
) -> bool {
    let mut changed = false;
    for b in cluster_roles() {
        if !st
            .cluster_roles
            .iter()
            .any(|r| r.metadata.name.as_deref() == Some(b.name))
        {
            let mut metadata = bootstrap(b.name, now, rng);
            let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
            for into in b.into {
                labels.insert(format!("{AGGREGATE_TO}{into}"), "true".into());
            }
            let aggregation_rule = b.aggregate.then(|| AggregationRule {
                cluster_role_selectors: Some(vec![LabelSelector {
                    match_labels: Some(
                        [(format!("{AGGREGATE_TO}{}", b.name), "true".into())].into(),
                    ),
                    ..Default::default()
                }]),
            });
            st.cluster_roles.push(ClusterRole {
                metadata,
                rules: Some(b.rules),
                aggregation_rule,
            });
            changed = true;
        }
    }
    changed |= aggregate(st);
    for (name, groups) in cluster_role_bindings() {
        if !st
            .cluster_role_bindings
            .iter()
            .any(|r| r.metadata.name.as_deref() == Some(name))
        {
            st.cluster_role_bindings.push(ClusterRoleBinding {
                metadata: bootstrap(name, now, rng),
                role_ref: RoleRef {
                    api_group: RBAC_GROUP.into(),
                    kind: "ClusterRole".into(),
                    name: name.into(),
                },
                subjects: Some(
                    groups
                        .iter()
                        .map(|g| Subject {
                            api_group: Some(RBAC_GROUP.into()),
                            kind: "Group".into(),
                            name: g.to_string(),
                            namespace: None,
                        })
                        .collect(),
                ),
            });
            changed = true;
        }
    }
    for ns in st.namespace_names() {
        // A namespace being deleted gets nothing new.
        if st.terminating(&ns) {
            continue;
        }
        let here = |m: &ObjectMeta, name: &str| {
            m.name.as_deref() == Some(name) && state::namespace(m) == ns
        };
        if !st
            .service_accounts
            .iter()
            .any(|a| here(&a.metadata, DEFAULT_ACCOUNT))
        {
            st.service_accounts.push(ServiceAccount {
                metadata: meta(DEFAULT_ACCOUNT, Some(&ns), now, rng),
                ..Default::default()
            });
            changed = true;
        }
        let Some(ca) = ca else { continue };
        let data: BTreeMap<String, String> = [("ca.crt".to_string(), ca.to_string())].into();
        match st
            .config_maps
            .iter_mut()
            .find(|c| here(&c.metadata, ROOT_CA))
        {
            Some(c) if c.data.as_ref() == Some(&data) => {}
            Some(mut c) => {
                c.data = Some(data);
                changed = true;
            }
            None => {
                st.config_maps.push(ConfigMap {
                    metadata: meta(ROOT_CA, Some(&ns), now, rng),
                    data: Some(data),
                    ..Default::default()
                });
                changed = true;
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn pods_naming_a_missing_account_are_refused_until_it_exists() {
        use crate::cluster::HostInfo;
        use rand::SeedableRng;
        let plan = |yaml: &str| {
            let spec =
                crate::lab::load_str(std::path::Path::new("t.yaml"), yaml, &Default::default())
                    .unwrap();
            let mut rng = rand::rngs::StdRng::seed_from_u64(1);
            ClusterState::plan(&spec, &HostInfo::default(), Utc::now(), &mut rng)
        };
        let why =
            r#"error looking up service account default/ghost: serviceaccount "ghost" not found"#;
        // A Pod of a lab file: refused, naming where it is.
        let e = plan("apiVersion: v1\nkind: Pod\nmetadata:\n  name: lost\nspec:\n  serviceAccountName: ghost\n  containers: [{name: c, image: nginx}]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.yaml") && e.contains(&format!("pods \"lost\" is forbidden: {why}")),
            "{e}"
        );
        // A Deployment's: its ReplicaSet makes none and says why, once a pace.
        let mut st = plan("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: robot\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: robot}\n  template:\n    metadata:\n      labels: {app: robot}\n    spec:\n      serviceAccountName: ghost\n      containers: [{name: c, image: nginx}]\n").unwrap();
        let robots = |st: &ClusterState| {
            st.pods
                .iter()
                .filter(|p| {
                    p.metadata
                        .name
                        .as_deref()
                        .unwrap_or("")
                        .starts_with("robot-")
                })
                .count()
        };
        let failures = |st: &ClusterState| -> Vec<(String, i32)> {
            st.events
                .iter()
                .filter(|e| e.reason.as_deref() == Some("FailedCreate"))
                .map(|e| (e.message.clone().unwrap_or_default(), e.count.unwrap_or(0)))
                .collect()
        };
        assert_eq!(robots(&st), 0);
        let f = failures(&st);
        assert!(
            f.len() == 1 && f[0].0.ends_with(&format!("is forbidden: {why}")),
            "{f:?}"
        );
        assert!(f[0].0.starts_with("Error creating: pods \"robot-"), "{f:?}");
        let mut rng = rand::rng();
        st.reconcile_workloads(Utc::now(), &mut rng).unwrap();
        assert_eq!(failures(&st)[0].1, 1, "not again within the pace");
        // The account is made: the pods come at the next pass.
        st.service_accounts.push(ServiceAccount {
            metadata: ObjectMeta {
                name: Some("ghost".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            ..Default::default()
        });
        st.reconcile_workloads(Utc::now(), &mut rng).unwrap();
        assert_eq!(robots(&st), 2);
        // `default` is the lab's own: never missing.
        let spec: PodSpec =
            serde_yaml_ng::from_str("serviceAccountName: default\ncontainers: []").unwrap();
        assert_eq!(
            missing_account("new-ns", Some(&spec), &Collection::new()),
            None
        );
    }

    #[test]
    fn admission_mounts_the_credentials_in_every_container() {
        let mut p = pod("metadata: {name: p, uid: u1}\nspec:\n  containers: [{name: a, image: x}, {name: b, image: x}]\n  initContainers: [{name: i, image: x}]\n");
        admit_pod(&mut p, &Collection::new());
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.service_account_name.as_deref(), Some("default"));
        let vols = spec.volumes.as_ref().unwrap();
        assert_eq!(vols.len(), 1);
        assert!(vols[0].name.starts_with("kube-api-access-") && vols[0].name.len() == 21);
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            let m = &c.volume_mounts.as_ref().unwrap()[0];
            assert_eq!(
                (m.mount_path.as_str(), m.read_only),
                (TOKEN_MOUNT, Some(true))
            );
        }
        let again = p.clone();
        admit_pod(&mut p, &Collection::new());
        assert_eq!(p, again, "admitted once");
    }

    #[test]
    fn automount_false_on_the_pod_or_its_account() {
        let mut p = pod("metadata: {name: p}\nspec:\n  automountServiceAccountToken: false\n  containers: [{name: a, image: x}]\n");
        admit_pod(&mut p, &Collection::new());
        assert!(p.spec.as_ref().unwrap().volumes.is_none());
        let sa: ServiceAccount = serde_yaml_ng::from_str(
            "metadata: {name: quiet}\nautomountServiceAccountToken: false\n",
        )
        .unwrap();
        let accounts: Collection<ServiceAccount> = vec![sa].into();
        let mut p = pod("metadata: {name: p}\nspec:\n  serviceAccountName: quiet\n  containers: [{name: a, image: x}]\n");
        admit_pod(&mut p, &accounts);
        assert!(p.spec.as_ref().unwrap().volumes.is_none());
        let mut p = pod("metadata: {name: p}\nspec:\n  serviceAccountName: quiet\n  automountServiceAccountToken: true\n  containers: [{name: a, image: x}]\n");
        admit_pod(&mut p, &accounts);
        assert!(
            p.spec.as_ref().unwrap().volumes.is_some(),
            "the pod's choice wins"
        );
    }

    #[test]
    fn ensure_makes_defaults_once_and_follows_the_ca() {
        let mut st = ClusterState::empty();
        let mut rng = rand::rng();
        assert!(ensure(&mut st, None, Utc::now(), &mut rng));
        assert!(st
            .cluster_roles
            .iter()
            .any(|r| r.metadata.name.as_deref() == Some("cluster-admin")));
        assert_eq!(st.service_accounts.len(), 4, "one per namespace");
        assert!(st.config_maps.is_empty());
        assert!(ensure(&mut st, Some("CA1"), Utc::now(), &mut rng));
        assert!(!ensure(&mut st, Some("CA1"), Utc::now(), &mut rng));
        assert!(ensure(&mut st, Some("CA2"), Utc::now(), &mut rng));
        assert_eq!(st.config_maps.len(), 4);
    }

    #[test]
    fn view_edit_and_admin_aggregate_what_is_labelled_for_them() {
        let mut st = ClusterState::empty();
        ensure(&mut st, None, Utc::now(), &mut rand::rng());
        let rules = |st: &ClusterState, name: &str| {
            st.cluster_roles
                .iter()
                .find(|r| r.metadata.name.as_deref() == Some(name))
                .and_then(|r| r.rules.clone())
                .unwrap_or_default()
        };
        let (view, edit, admin) = (rules(&st, "view"), rules(&st, "edit"), rules(&st, "admin"));
        assert!(!view.is_empty());
        assert!(
            view.iter().all(|r| edit.contains(r)),
            "edit has view's rules"
        );
        assert!(
            edit.iter().all(|r| admin.contains(r)),
            "admin has edit's rules"
        );
        assert!(edit.len() > view.len() && admin.len() > edit.len());
        assert!(!aggregate(&mut st), "nothing moves twice");
        // A role labelled for view extends all three.
        let widgets: ClusterRole = serde_yaml_ng::from_str(
            "metadata: {name: widgets, labels: {rbac.authorization.k8s.io/aggregate-to-view: 'true'}}\nrules: [{apiGroups: [''], resources: [widgets], verbs: [list]}]\n",
        )
        .unwrap();
        let widget_rule = widgets.rules.clone().unwrap()[0].clone();
        st.cluster_roles.push(widgets);
        assert!(aggregate(&mut st));
        for name in ["view", "edit", "admin"] {
            assert!(rules(&st, name).contains(&widget_rule), "{name}");
        }
        // Unlabelled, it leaves them again.
        st.cluster_roles
            .retain(|r| r.metadata.name.as_deref() != Some("widgets"));
        assert!(aggregate(&mut st));
        assert_eq!(rules(&st, "admin"), admin);
    }

    #[test]
    fn validation_as_kube_apiserver() {
        let mut ok: AccessObject = AccessObject::ClusterRole(serde_yaml_ng::from_str("metadata: {name: 'system:x', namespace: y}\nrules: [{apiGroups: [''], resources: [pods], verbs: [get]}]\n").unwrap());
        ok.validate().unwrap();
        assert_eq!(ok.meta().namespace, None);
        let mut bad = AccessObject::Role(
            serde_yaml_ng::from_str(
                "metadata: {name: r}\nrules: [{nonResourceURLs: ['/x'], verbs: [get]}]\n",
            )
            .unwrap(),
        );
        assert!(bad.validate().unwrap_err().contains("non-resource"));
        let mut bad = AccessObject::RoleBinding(serde_yaml_ng::from_str("metadata: {name: b}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Pod, name: x}\n").unwrap());
        assert!(bad.validate().unwrap_err().contains("roleRef.kind"));
        let mut bad = AccessObject::ServiceAccount(
            serde_yaml_ng::from_str("metadata: {name: 'A_b'}\n").unwrap(),
        );
        assert!(bad.validate().is_err());
    }
}
