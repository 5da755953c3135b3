//! Discovery documents, as kube-apiserver serves them: `/version`, the
//! legacy `/api`, `/apis`, `/api/v1`, `/apis/<g>/<v>` lists, and the
//! aggregated form (`apidiscovery.k8s.io` v2 and v2beta1) that kubectl asks
//! for first. Aggregated v2beta1 is what kubectl 1.27 understands; 1.30+
//! offer v2 first. Pure.

use super::resources::{self, Resource};
use serde_json::{json, Value};

/// The Kubernetes version the lab's API speaks (the newest kubectl here).
pub const MAJOR: &str = "1";
pub const MINOR: &str = "33";

pub fn version() -> Value {
    json!({
        "major": MAJOR,
        "minor": MINOR,
        "gitVersion": format!("v{MAJOR}.{MINOR}.0-netlab.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "none (netlab is written in Rust)",
        "compiler": "rustc",
        "platform": format!("linux/{}", std::env::consts::ARCH),
    })
}

pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_version(g: &str, v: &str) -> Value {
    json!({"groupVersion": format!("{g}/{v}"), "version": v})
}

pub fn groups() -> Value {
    let groups: Vec<Value> = resources::groups()
        .into_iter()
        .map(|(g, v)| {
            json!({
                "name": g,
                "versions": [group_version(g, v)],
                "preferredVersion": group_version(g, v),
            })
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// The group and version of a subresource's kind, where it is not the
/// resource's own (kube-apiserver names them: kubectl drain looks for
/// `pods/eviction` of `policy/v1` before it evicts).
fn subresource_group_version(kind: &str) -> Option<(&'static str, &'static str)> {
    match kind {
        "Eviction" => Some(("policy", "v1")),
        "Scale" => Some(("autoscaling", "v1")),
        _ => None,
    }
}

fn legacy_entry(r: &Resource) -> Vec<Value> {
    let mut out = vec![json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": r.verbs,
        "shortNames": r.short_names,
        "categories": r.categories,
    })];
    for (sub, kind, verbs) in r.subresources {
        let mut entry = json!({
            "name": format!("{}/{sub}", r.plural),
            "singularName": "",
            "namespaced": r.namespaced,
            "kind": kind,
            "verbs": verbs,
        });
        if let Some((group, version)) = subresource_group_version(kind) {
            entry["group"] = group.into();
            entry["version"] = version.into();
        }
        out.push(entry);
    }
    out
}

pub fn resource_list(group: &str, version: &str) -> Value {
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let list: Vec<Value> = resources::in_group(group, version)
        .flat_map(legacy_entry)
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list})
}

/// The aggregated discovery document for `/api` (core) or `/apis` (the
/// groups), in the `apidiscovery.k8s.io` version kubectl asked for.
pub fn aggregated(core: bool, api_version: &str) -> Value {
    let groups: Vec<(&str, &str)> = if core {
        vec![("", "v1")]
    } else {
        resources::groups()
    };
    let items: Vec<Value> = groups
        .into_iter()
        .map(|(g, v)| {
            let res: Vec<Value> = resources::in_group(g, v)
                .map(|r| {
                    let subs: Vec<Value> = r
                        .subresources
                        .iter()
                        .map(|(sub, kind, verbs)| {
                            let (group, version) =
                                subresource_group_version(kind).unwrap_or(("", ""));
                            json!({
                                "subresource": sub,
                                "responseKind": {"group": group, "version": version, "kind": kind},
                                "verbs": verbs,
                            })
                        })
                        .collect();
                    json!({
                        "resource": r.plural,
                        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": r.singular,
                        "verbs": r.verbs,
                        "shortNames": r.short_names,
                        "categories": r.categories,
                        "subresources": subs,
                    })
                })
                .collect();
            let mut meta = json!({"creationTimestamp": null});
            if !g.is_empty() {
                meta["name"] = g.into();
            }
            json!({
                "metadata": meta,
                "versions": [{"version": v, "resources": res, "freshness": "Current"}],
            })
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": api_version,
        "metadata": {},
        "items": items,
    })
}

/// Which aggregated discovery version an Accept header asks for, in the
/// client's order of preference: `v2`, `v2beta1`, or None (legacy JSON).
pub fn wanted_aggregated(accept: &str) -> Option<&'static str> {
    for part in accept.split(',') {
        let p: Vec<&str> = part.split(';').map(str::trim).collect();
        if !p.contains(&"as=APIGroupDiscoveryList") || !p.contains(&"g=apidiscovery.k8s.io") {
            continue;
        }
        if p.contains(&"v=v2") {
            return Some("v2");
        }
        if p.contains(&"v=v2beta1") {
            return Some("v2beta1");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_of_each_kubectl() {
        let k127 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        let k130 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(wanted_aggregated(k127), Some("v2beta1"));
        assert_eq!(wanted_aggregated(k130), Some("v2"));
        assert_eq!(wanted_aggregated("application/json"), None);
    }

    #[test]
    fn documents_name_every_resource() {
        let core = resource_list("", "v1");
        let names: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"pods") && names.contains(&"pods/log"));
        let agg = aggregated(false, "apidiscovery.k8s.io/v2");
        assert_eq!(agg["items"][0]["metadata"]["name"], "apps");
        assert_eq!(
            agg["items"][0]["versions"][0]["resources"][0]["resource"],
            "deployments"
        );
        assert_eq!(
            groups()["groups"][0]["preferredVersion"]["groupVersion"],
            "apps/v1"
        );
    }
}
