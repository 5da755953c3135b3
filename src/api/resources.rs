//! The resources the lab's API serves, as kube-apiserver's discovery names
//! them (plural, singular, kind, short names, verbs, categories): the one
//! list that discovery, routing and kubectl's `get TYPE` all go by.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Subresources (`pods/log`…), each with its kind and verbs.
    pub subresources: &'static [(&'static str, &'static str, &'static [&'static str])],
}

impl Resource {
    /// A review: created (answered by `api::rbac`), never stored.
    pub fn answered(&self) -> bool {
        self.verbs == ANSWERED
    }

    pub fn group_version(&self) -> String {
        match self.group {
            "" => self.version.to_string(),
            g => format!("{g}/{}", self.version),
        }
    }

    /// `pods`, `deployments.apps`: how kube-apiserver names it in errors.
    pub fn qualified(&self) -> String {
        match self.group {
            "" => self.plural.to_string(),
            g => format!("{}.{g}", self.plural),
        }
    }
}

const ALL: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const NO_COLLECTION_DELETE: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const READ_UPDATE: &[&str] = &["get", "patch", "update"];

const fn core(
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
) -> Resource {
    Resource {
        group: "",
        version: "v1",
        plural,
        singular,
        kind,
        namespaced,
        short_names,
        verbs: ALL,
        categories: &[],
        subresources: &[],
    }
}

pub const RESOURCES: &[Resource] = &[
    Resource {
        categories: &["all"],
        subresources: &[
            ("status", "Pod", READ_UPDATE),
            ("log", "Pod", &["get"]),
            ("exec", "PodExecOptions", &["create", "get"]),
            ("attach", "PodAttachOptions", &["create", "get"]),
            ("portforward", "PodPortForwardOptions", &["create", "get"]),
            ("eviction", "Eviction", &["create"]),
        ],
        ..core("pods", "pod", "Pod", true, &["po"])
    },
    Resource {
        categories: &["all"],
        verbs: NO_COLLECTION_DELETE,
        subresources: &[("status", "Service", READ_UPDATE)],
        ..core("services", "service", "Service", true, &["svc"])
    },
    core("endpoints", "endpoints", "Endpoints", true, &["ep"]),
    Resource {
        subresources: &[("status", "Node", READ_UPDATE)],
        ..core("nodes", "node", "Node", false, &["no"])
    },
    Resource {
        verbs: &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ],
        subresources: &[("status", "Namespace", READ_UPDATE)],
        ..core("namespaces", "namespace", "Namespace", false, &["ns"])
    },
    core("events", "event", "Event", true, &["ev"]),
    core("secrets", "secret", "Secret", true, &[]),
    Resource {
        subresources: &[("token", "TokenRequest", &["create"])],
        ..core(
            "serviceaccounts",
            "serviceaccount",
            "ServiceAccount",
            true,
            &["sa"],
        )
    },
    core("configmaps", "configmap", "ConfigMap", true, &["cm"]),
    Resource {
        group: "apps",
        categories: &["all"],
        subresources: &[
            ("scale", "Scale", READ_UPDATE),
            ("status", "Deployment", READ_UPDATE),
        ],
        ..core("deployments", "deployment", "Deployment", true, &["deploy"])
    },
    Resource {
        group: "apps",
        categories: &["all"],
        subresources: &[
            ("scale", "Scale", READ_UPDATE),
            ("status", "ReplicaSet", READ_UPDATE),
        ],
        ..core("replicasets", "replicaset", "ReplicaSet", true, &["rs"])
    },
    Resource {
        group: "discovery.k8s.io",
        ..core(
            "endpointslices",
            "endpointslice",
            "EndpointSlice",
            true,
            &[],
        )
    },
    Resource {
        group: "networking.k8s.io",
        ..core(
            "networkpolicies",
            "networkpolicy",
            "NetworkPolicy",
            true,
            &["netpol"],
        )
    },
    rbac("roles", "role", "Role", true),
    rbac("rolebindings", "rolebinding", "RoleBinding", true),
    rbac("clusterroles", "clusterrole", "ClusterRole", false),
    rbac(
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        false,
    ),
    // Answered, not stored (`api::rbac`): what `kubectl auth can-i` asks,
    // and what webhooks and auth proxies ask (`system:auth-delegator`).
    review(
        "authorization.k8s.io",
        "selfsubjectaccessreviews",
        "selfsubjectaccessreview",
        "SelfSubjectAccessReview",
        false,
    ),
    review(
        "authorization.k8s.io",
        "subjectaccessreviews",
        "subjectaccessreview",
        "SubjectAccessReview",
        false,
    ),
    review(
        "authorization.k8s.io",
        "localsubjectaccessreviews",
        "localsubjectaccessreview",
        "LocalSubjectAccessReview",
        true,
    ),
    review(
        "authentication.k8s.io",
        "tokenreviews",
        "tokenreview",
        "TokenReview",
        false,
    ),
    review(
        "authentication.k8s.io",
        "selfsubjectreviews",
        "selfsubjectreview",
        "SelfSubjectReview",
        false,
    ),
    review(
        "authorization.k8s.io",
        "selfsubjectrulesreviews",
        "selfsubjectrulesreview",
        "SelfSubjectRulesReview",
        false,
    ),
];

/// The verbs of a review.
const ANSWERED: &[&str] = &["create"];

/// A review: created (answered), never stored.
const fn review(
    group: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
) -> Resource {
    Resource {
        group,
        verbs: ANSWERED,
        ..core(plural, singular, kind, namespaced, &[])
    }
}

const fn rbac(
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
) -> Resource {
    Resource {
        group: "rbac.authorization.k8s.io",
        ..core(plural, singular, kind, namespaced, &[])
    }
}

/// The API groups besides the core one, each with its one version.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

pub fn in_group<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static Resource> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    in_group(group, version).find(|r| r.plural == plural)
}

/// The resource a kubectl-style TYPE names: its plural, singular, a short
/// name or its kind, in any case, optionally qualified by its group
/// (`deployments.apps`), as kubectl resolves it from discovery.
pub fn lookup(name: &str) -> Option<&'static Resource> {
    let name = name.to_lowercase();
    let (name, group) = match name.split_once('.') {
        Some((n, g)) => (n.to_string(), Some(g.to_string())),
        None => (name, None),
    };
    RESOURCES.iter().find(|r| {
        group.as_deref().is_none_or(|g| g == r.group)
            && (r.plural == name
                || r.singular == name
                || r.kind.to_lowercase() == name
                || r.short_names.contains(&name.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_by_kubectl_names() {
        assert_eq!(lookup("po").unwrap().plural, "pods");
        assert_eq!(lookup("Deployment").unwrap().plural, "deployments");
        assert_eq!(lookup("deployments.apps").unwrap().plural, "deployments");
        assert_eq!(lookup("svc").unwrap().plural, "services");
        for name in [
            "netpol",
            "networkpolicy",
            "NetworkPolicies",
            "networkpolicies.networking.k8s.io",
        ] {
            let r = lookup(name).unwrap();
            assert_eq!(r.qualified(), "networkpolicies.networking.k8s.io", "{name}");
            assert!(r.namespaced && r.categories.is_empty() && r.verbs == ALL);
        }
        assert!(lookup("deployments.core").is_none());
        assert!(lookup("svcx").is_none());
    }

    #[test]
    fn names_are_unique_and_kubectl_shaped() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert!(
                    a.group != b.group || a.plural != b.plural,
                    "{} twice",
                    a.plural
                );
            }
            assert_eq!(a.plural, a.plural.to_lowercase());
        }
        assert_eq!(
            find("apps", "v1", "deployments").unwrap().kind,
            "Deployment"
        );
        assert_eq!(find("", "v1", "pods").unwrap().qualified(), "pods");
        assert_eq!(
            find("apps", "v1", "deployments").unwrap().qualified(),
            "deployments.apps"
        );
        assert!(find("", "v1", "deployments").is_none());
        assert_eq!(
            find("apps", "v1", "replicasets").unwrap().qualified(),
            "replicasets.apps"
        );
        assert_eq!(
            groups(),
            [
                ("apps", "v1"),
                ("discovery.k8s.io", "v1"),
                ("networking.k8s.io", "v1"),
                ("rbac.authorization.k8s.io", "v1"),
                ("authorization.k8s.io", "v1"),
                ("authentication.k8s.io", "v1")
            ]
        );
    }
}
