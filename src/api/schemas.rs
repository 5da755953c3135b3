//! The schemas of the kinds the API serves, from the Kubernetes types the
//! lab already uses: k8s-openapi's `JsonSchema` impls (its `schemars`
//! feature), which carry kube-openapi's definition names
//! (`io.k8s.api.core.v1.Pod`) and descriptions. Made once per process
//! (`definitions()`, ~10 ms), in swagger 2.0 shape (`#/definitions/…`
//! refs with sibling descriptions); `openapi.rs` reshapes them for v3.
//!
//! k8s-openapi leaves out two things kube-openapi adds, and kubectl uses:
//! `x-kubernetes-group-version-kind` on each kind (how kubectl finds a
//! kind's schema) and the strategic-merge keys of lists
//! (`x-kubernetes-patch-merge-key`, from the Go types' struct tags; kubectl
//! 1.27/1.28's `apply` builds its patches with them). Both are added here.
//!
//! The same schemas decide `fieldValidation=Strict`: `unknown_fields`
//! lists the fields of a body no schema declares, as kube-apiserver's
//! strict decoder names them. Pure.

use super::resources::Resource;
use k8s_openapi::api::{apps, authorization, core, discovery, networking, rbac};
use schemars::{generate::SchemaSettings, JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

/// The definition name of a served kind's schema, or None for kinds with
/// no schema here.
pub fn definition_name(r: &Resource) -> Option<String> {
    fn name<T: JsonSchema>() -> Option<String> {
        Some(T::schema_name().into_owned())
    }
    match (r.group, r.kind) {
        ("", "Pod") => name::<core::v1::Pod>(),
        ("", "Service") => name::<core::v1::Service>(),
        ("", "Endpoints") => name::<core::v1::Endpoints>(),
        ("", "Node") => name::<core::v1::Node>(),
        ("", "Namespace") => name::<core::v1::Namespace>(),
        ("", "Event") => name::<core::v1::Event>(),
        ("", "Secret") => name::<core::v1::Secret>(),
        ("", "ConfigMap") => name::<core::v1::ConfigMap>(),
        ("apps", "Deployment") => name::<apps::v1::Deployment>(),
        ("apps", "ReplicaSet") => name::<apps::v1::ReplicaSet>(),
        ("discovery.k8s.io", "EndpointSlice") => name::<discovery::v1::EndpointSlice>(),
        ("networking.k8s.io", "NetworkPolicy") => name::<networking::v1::NetworkPolicy>(),
        ("", "ServiceAccount") => name::<core::v1::ServiceAccount>(),
        ("rbac.authorization.k8s.io", "Role") => name::<rbac::v1::Role>(),
        ("rbac.authorization.k8s.io", "RoleBinding") => name::<rbac::v1::RoleBinding>(),
        ("rbac.authorization.k8s.io", "ClusterRole") => name::<rbac::v1::ClusterRole>(),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            name::<rbac::v1::ClusterRoleBinding>()
        }
        ("authorization.k8s.io", "SelfSubjectAccessReview") => {
            name::<authorization::v1::SelfSubjectAccessReview>()
        }
        ("authorization.k8s.io", "SelfSubjectRulesReview") => {
            name::<authorization::v1::SelfSubjectRulesReview>()
        }
        ("authorization.k8s.io", "SubjectAccessReview") => {
            name::<authorization::v1::SubjectAccessReview>()
        }
        ("authorization.k8s.io", "LocalSubjectAccessReview") => {
            name::<authorization::v1::LocalSubjectAccessReview>()
        }
        ("authentication.k8s.io", "TokenReview") => {
            name::<k8s_openapi::api::authentication::v1::TokenReview>()
        }
        ("authentication.k8s.io", "SelfSubjectReview") => {
            name::<k8s_openapi::api::authentication::v1::SelfSubjectReview>()
        }
        _ => None,
    }
}

fn generate() -> Map<String, Value> {
    let mut g: SchemaGenerator = SchemaSettings::draft07()
        .with(|s| {
            // kube-openapi's v2 shape: `$ref` keeps its sibling description.
            s.transforms.clear();
            s.meta_schema = None;
        })
        .into_generator();
    g.subschema_for::<core::v1::Pod>();
    g.subschema_for::<core::v1::Service>();
    g.subschema_for::<core::v1::Endpoints>();
    g.subschema_for::<core::v1::Node>();
    g.subschema_for::<core::v1::Namespace>();
    g.subschema_for::<core::v1::Event>();
    g.subschema_for::<core::v1::Secret>();
    g.subschema_for::<core::v1::ConfigMap>();
    g.subschema_for::<apps::v1::Deployment>();
    g.subschema_for::<apps::v1::ReplicaSet>();
    g.subschema_for::<discovery::v1::EndpointSlice>();
    g.subschema_for::<networking::v1::NetworkPolicy>();
    g.subschema_for::<core::v1::ServiceAccount>();
    g.subschema_for::<rbac::v1::Role>();
    g.subschema_for::<rbac::v1::RoleBinding>();
    g.subschema_for::<rbac::v1::ClusterRole>();
    g.subschema_for::<rbac::v1::ClusterRoleBinding>();
    g.subschema_for::<authorization::v1::SelfSubjectAccessReview>();
    g.subschema_for::<authorization::v1::SelfSubjectRulesReview>();
    g.subschema_for::<authorization::v1::SubjectAccessReview>();
    g.subschema_for::<authorization::v1::LocalSubjectAccessReview>();
    g.subschema_for::<k8s_openapi::api::authentication::v1::TokenReview>();
    g.subschema_for::<k8s_openapi::api::authentication::v1::SelfSubjectReview>();
    let mut defs = g.take_definitions(false);
    for r in super::resources::RESOURCES {
        if let Some(Value::Object(d)) = definition_name(r).and_then(|n| defs.get_mut(&n)) {
            d.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": r.group, "kind": r.kind, "version": r.version}]),
            );
        }
    }
    for (def, field, key, strategy) in MERGE_KEYS {
        let Some(Value::Object(p)) = defs
            .get_mut(*def)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(*field))
        else {
            continue;
        };
        if !key.is_empty() {
            p.insert("x-kubernetes-patch-merge-key".into(), (*key).into());
        }
        p.insert("x-kubernetes-patch-strategy".into(), (*strategy).into());
    }
    defs
}

/// The strategic-merge directives of the Kubernetes Go types (their
/// `patchMergeKey`/`patchStrategy` struct tags) for the served kinds:
/// definition, field, merge key ("" for a list of scalars), strategy.
const MERGE_KEYS: &[(&str, &str, &str, &str)] = &[
    ("io.k8s.api.core.v1.PodSpec", "containers", "name", "merge"),
    (
        "io.k8s.api.core.v1.PodSpec",
        "initContainers",
        "name",
        "merge",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "ephemeralContainers",
        "name",
        "merge",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "volumes",
        "name",
        "merge,retainKeys",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "imagePullSecrets",
        "name",
        "merge",
    ),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", "ip", "merge"),
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        "containerPort",
        "merge",
    ),
    ("io.k8s.api.core.v1.Container", "env", "name", "merge"),
    (
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        "mountPath",
        "merge",
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        "devicePath",
        "merge",
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "env",
        "name",
        "merge",
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeMounts",
        "mountPath",
        "merge",
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "conditions",
        "type",
        "merge",
    ),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", "ip", "merge"),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", "port", "merge"),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "conditions",
        "type",
        "merge",
    ),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "addresses",
        "type",
        "merge",
    ),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "", "merge"),
    (
        "io.k8s.api.apps.v1.DeploymentSpec",
        "strategy",
        "",
        "retainKeys",
    ),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        "type",
        "merge",
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        "type",
        "merge",
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        "",
        "merge",
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "uid",
        "merge",
    ),
];

/// Every definition the served kinds reach, keyed by kube-openapi's name.
pub fn definitions() -> &'static Map<String, Value> {
    static DEFS: OnceLock<Map<String, Value>> = OnceLock::new();
    DEFS.get_or_init(|| {
        let started = std::time::Instant::now();
        let defs = generate();
        tracing::debug!(elapsed = ?started.elapsed(), n = defs.len(), "openapi schemas");
        defs
    })
}

/// The definition a `$ref` names.
pub fn ref_name(s: &Value) -> Option<&str> {
    s.get("$ref")?.as_str()?.strip_prefix("#/definitions/")
}

/// The definitions `roots` reach (themselves included), sorted by name.
pub fn reachable(roots: &[String]) -> Map<String, Value> {
    fn walk(v: &Value, seen: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if let Some(n) = ref_name(v) {
                    if !seen.iter().any(|s| s == n) {
                        seen.push(n.to_string());
                        if let Some(d) = definitions().get(n) {
                            walk(d, seen);
                        }
                    }
                }
                o.values().for_each(|c| walk(c, seen));
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, seen)),
            _ => {}
        }
    }
    let mut seen = Vec::new();
    for r in roots {
        walk(&json!({"$ref": format!("#/definitions/{r}")}), &mut seen);
    }
    seen.sort();
    seen.into_iter()
        .filter_map(|n| definitions().get(&n).map(|d| (n, d.clone())))
        .collect()
}

/// The fields of `value` that the schema of definition `def` does not
/// declare, as kube-apiserver's strict decoder names them
/// (`spec.template.spec.containers[0].imagee`). Keys starting with `$`
/// (strategic-merge directives) are not fields.
pub fn unknown_fields(def: &str, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let schema = json!({"$ref": format!("#/definitions/{def}")});
    walk_unknown(&schema, value, "", &mut out);
    out
}

fn walk_unknown(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    let schema = match ref_name(schema).and_then(|n| definitions().get(n)) {
        Some(d) => d,
        None => schema,
    };
    match value {
        Value::Object(o) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, v) in o {
                let at = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (props.and_then(|p| p.get(k)), extra) {
                    (Some(s), _) | (None, Some(s)) => walk_unknown(s, v, &at, out),
                    (None, None) if props.is_some() && !k.starts_with('$') => out.push(at),
                    // A free-form object (no declared fields): anything goes.
                    (None, None) => {}
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for (i, v) in a.iter().enumerate() {
                    walk_unknown(items, v, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources;

    #[test]
    fn every_served_kind_has_its_schema_with_gvk() {
        for r in resources::RESOURCES {
            let n = definition_name(r).unwrap_or_else(|| panic!("{} has no schema", r.kind));
            let d = &definitions()[&n];
            assert_eq!(d["x-kubernetes-group-version-kind"][0]["kind"], r.kind);
            assert!(d["properties"]["metadata"].is_object(), "{n}");
        }
        assert_eq!(
            definition_name(resources::find("apps", "v1", "deployments").unwrap()).unwrap(),
            "io.k8s.api.apps.v1.Deployment"
        );
        let c = &definitions()["io.k8s.api.core.v1.Container"]["properties"];
        assert_eq!(c["ports"]["x-kubernetes-patch-merge-key"], "containerPort");
        assert_eq!(c["env"]["x-kubernetes-patch-strategy"], "merge");
        // Every table entry names a field that exists.
        for (def, field, ..) in MERGE_KEYS {
            assert!(
                definitions()[*def]["properties"].get(*field).is_some(),
                "{def}.{field}"
            );
        }
    }

    #[test]
    fn references_resolve_and_cost_little() {
        let started = std::time::Instant::now();
        let defs = definitions();
        let cost = started.elapsed();
        eprintln!("{} schema definitions in {cost:?}", defs.len());
        assert!(cost < std::time::Duration::from_millis(100), "{cost:?}");
        for d in defs.values() {
            let mut refs = Vec::new();
            fn collect(v: &Value, out: &mut Vec<String>) {
                match v {
                    Value::Object(o) => {
                        if let Some(n) = ref_name(v) {
                            out.push(n.to_string());
                        }
                        o.values().for_each(|c| collect(c, out));
                    }
                    Value::Array(a) => a.iter().for_each(|c| collect(c, out)),
                    _ => {}
                }
            }
            collect(d, &mut refs);
            for r in refs {
                assert!(defs.contains_key(&r), "{r} is not defined");
            }
        }
        let dep = reachable(&["io.k8s.api.apps.v1.Deployment".into()]);
        assert!(dep.contains_key("io.k8s.api.core.v1.Container"));
        assert!(!dep.contains_key("io.k8s.api.core.v1.Service"));
    }

    #[test]
    fn unknown_fields_are_named_by_their_path() {
        let dep = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "labels": {"any": "thing"}, "annotations": {"x": "y"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"run": "d"}}, "replicaz": 2,
                     "template": {"metadata": {"labels": {"run": "d"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx",
                                     "ports": [{"containerPort": 80, "prot": "TCP"}]}]}}},
        });
        assert_eq!(
            unknown_fields("io.k8s.api.apps.v1.Deployment", &dep),
            [
                "spec.replicaz",
                "spec.template.spec.containers[0].ports[0].prot"
            ]
        );
        // Strategic-merge directives are not fields.
        let patch =
            json!({"spec": {"$setElementOrder/ports": [{"port": 80}], "ports": [{"port": 80}]}});
        assert!(unknown_fields("io.k8s.api.core.v1.Service", &patch).is_empty());
        let cm = json!({"data": {"free": "form"}, "binaryData": {}, "metadata": {"name": "x"}});
        assert!(unknown_fields("io.k8s.api.core.v1.ConfigMap", &cm).is_empty());
    }
}
