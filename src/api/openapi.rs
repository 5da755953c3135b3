//! OpenAPI v3, as much as kubectl needs of it: `/openapi/v3` lists one
//! document per group-version; each document has, per kind, the object
//! paths with a `patch` operation carrying `x-kubernetes-group-version-kind`
//! and the `fieldValidation` query parameter. From that kubectl (1.29+)
//! learns that the server validates fields itself (`fieldValidation=Strict`)
//! and skips its own schema check. Schemas for `kubectl explain` and
//! `/openapi/v2` (protobuf, which kubectl 1.27/1.28 require) are not served
//! yet. Pure.

use super::resources::{self, Resource};
use serde_json::{json, Value};

fn gv_path(group: &str, version: &str) -> String {
    match group {
        "" => format!("api/{version}"),
        g => format!("apis/{g}/{version}"),
    }
}

fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out = vec![("", "v1")];
    out.extend(resources::groups());
    out
}

/// `/openapi/v3`: where each group-version's document is.
pub fn index() -> Value {
    let mut paths = serde_json::Map::new();
    for (g, v) in group_versions() {
        let p = gv_path(g, v);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash())}),
        );
    }
    json!({"paths": paths})
}

/// Documents change only with netlab's version.
fn hash() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

fn operation(r: &Resource, verb: &str, params: &[&str]) -> Value {
    let parameters: Vec<Value> = params
        .iter()
        .map(|p| json!({"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": true}}))
        .collect();
    json!({
        "operationId": format!("{verb}{}", r.kind),
        "parameters": parameters,
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": verb,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
    })
}

/// `/openapi/v3/api/v1`, `/openapi/v3/apis/apps/v1`; None for others.
pub fn document(path: &str) -> Option<Value> {
    let (g, v) = group_versions()
        .into_iter()
        .find(|(g, v)| gv_path(g, v) == path.trim_matches('/'))?;
    let mut paths = serde_json::Map::new();
    let write = ["dryRun", "fieldManager", "fieldValidation"];
    for r in resources::in_group(g, v) {
        let base = format!("/{}", gv_path(g, v));
        let (collection, object) = if r.namespaced {
            (
                format!("{base}/namespaces/{{namespace}}/{}", r.plural),
                format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural),
            )
        } else {
            (
                format!("{base}/{}", r.plural),
                format!("{base}/{}/{{name}}", r.plural),
            )
        };
        paths.insert(
            collection,
            json!({"get": operation(r, "list", &[]), "post": operation(r, "post", &write)}),
        );
        paths.insert(
            object,
            json!({
                "get": operation(r, "get", &[]),
                "put": operation(r, "put", &write),
                "patch": operation(r, "patch", &["dryRun", "fieldManager", "fieldValidation", "force"]),
                "delete": operation(r, "delete", &["dryRun"]),
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v{}.{}.0", super::discovery::MAJOR, super::discovery::MINOR)},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_operations_advertise_field_validation() {
        let idx = index();
        assert!(idx["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap()
            .starts_with("/openapi/v3/apis/apps/v1?hash="));
        let d = document("apis/apps/v1").unwrap();
        let op = &d["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation"));
        assert!(document("api/v1").unwrap()["paths"]
            .get("/api/v1/nodes/{name}")
            .is_some());
        assert!(document("apis/batch/v1").is_none());
    }
}
