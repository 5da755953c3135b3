//! OpenAPI, as kube-apiserver serves it and kubectl reads it:
//!
//! - `/openapi/v2`: one swagger 2.0 document of every served kind, as the
//!   gnostic protobuf (`openapi_v2.rs`) unless the client asks for JSON.
//!   kubectl 1.27/1.28 fetch it before `apply`, `edit` and `patch`.
//! - `/openapi/v3`: the index (a `serverRelativeURL` with the document's
//!   hash per group-version) and `/openapi/v3/api/v1`,
//!   `/openapi/v3/apis/apps/v1`: OpenAPI 3.0 documents whose schemas sit
//!   under `#/components/schemas/` (`$ref`s with a description wrapped in
//!   `allOf`, as kube-openapi writes them). `kubectl explain` reads these.
//!
//! Both carry, per kind, the object paths with a `patch` operation that has
//! `x-kubernetes-group-version-kind` and the `fieldValidation` query
//! parameter: from that kubectl learns that the server validates fields
//! itself (`fieldValidation=Strict`, see `writes.rs`). The schemas are
//! `schemas.rs`'s. Every document is built once per process. Pure.

use super::openapi_v2 as pb;
use super::resources::{self, Resource};
use super::schemas;
use serde_json::{json, Map, Value};
use sha2::Digest;
use std::collections::BTreeMap;
use std::sync::OnceLock;

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

/// One operation of a resource's paths.
struct Op {
    path: String,
    method: &'static str,
    action: &'static str,
    query: &'static [&'static str],
    /// Whether the request body is the object (POST, PUT, PATCH).
    body: bool,
    /// Whether the answer is the object (not a list or a Status).
    returns_object: bool,
}

const WRITE: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];
const PATCH: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "force"];

fn ops(r: &Resource) -> Vec<Op> {
    let base = format!("/{}", gv_path(r.group, r.version));
    let collection = if r.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{base}/{}", r.plural)
    };
    let object = format!("{collection}/{{name}}");
    let op = |path: &String, method, action, query, body, returns_object| Op {
        path: path.clone(),
        method,
        action,
        query,
        body,
        returns_object,
    };
    vec![
        op(&collection, "get", "list", &[], false, false),
        op(&collection, "post", "post", WRITE, true, true),
        op(&object, "get", "get", &[], false, true),
        op(&object, "put", "put", WRITE, true, true),
        op(&object, "patch", "patch", PATCH, true, true),
        op(&object, "delete", "delete", &["dryRun"], false, false),
    ]
}

/// `patchCoreV1NamespacedPod`, as kube-openapi names operations.
fn operation_id(r: &Resource, op: &Op) -> String {
    let upper = |s: &str| -> String {
        let mut c = s.chars();
        c.next()
            .map(|f| f.to_uppercase().chain(c).collect())
            .unwrap_or_default()
    };
    let group: String = match r.group {
        "" => "Core".into(),
        g => g.split('.').map(upper).collect(),
    };
    let ns = if r.namespaced { "Namespaced" } else { "" };
    let verb = match op.action {
        "post" => "create",
        "put" => "replace",
        a => a,
    };
    format!("{verb}{group}{}{ns}{}", upper(r.version), r.kind)
}

fn gvk(r: &Resource) -> Value {
    json!({"group": r.group, "version": r.version, "kind": r.kind})
}

fn path_params(path: &str) -> Vec<&'static str> {
    ["name", "namespace"]
        .into_iter()
        .filter(|p| path.contains(&format!("{{{p}}}")))
        .collect()
}

/// The paths of the served kinds in `resources` (`v3`: OpenAPI 3.0 shape,
/// else swagger 2.0), each with its operations.
fn paths<'a>(rs: impl Iterator<Item = &'a Resource>, v3: bool) -> Map<String, Value> {
    let mut paths = Map::new();
    for r in rs {
        let Some(def) = schemas::definition_name(r) else {
            continue;
        };
        let reference = if v3 {
            json!({"$ref": format!("#/components/schemas/{def}")})
        } else {
            json!({"$ref": format!("#/definitions/{def}")})
        };
        for op in ops(r) {
            let mut parameters: Vec<Value> = op
                .query
                .iter()
                .map(|p| match v3 {
                    true => json!({"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": true}}),
                    false => json!({"name": p, "in": "query", "type": "string", "uniqueItems": true}),
                })
                .collect();
            let mut o = json!({
                "operationId": operation_id(r, &op),
                "x-kubernetes-action": op.action,
                "x-kubernetes-group-version-kind": gvk(r),
            });
            let ok = match (v3, op.returns_object) {
                (true, true) => {
                    json!({"description": "OK", "content": {"application/json": {"schema": reference}}})
                }
                (false, true) => json!({"description": "OK", "schema": reference}),
                (_, false) => json!({"description": "OK"}),
            };
            o["responses"] = json!({"200": ok});
            if op.body {
                if v3 {
                    o["requestBody"] =
                        json!({"content": {"*/*": {"schema": reference}}, "required": true});
                } else {
                    parameters.push(
                        json!({"name": "body", "in": "body", "required": true, "schema": reference}),
                    );
                }
            }
            o["parameters"] = parameters.into();
            let item = paths.entry(op.path.clone()).or_insert_with(|| {
                let params: Vec<Value> = path_params(&op.path)
                    .into_iter()
                    .map(|p| match v3 {
                        true => json!({"name": p, "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}}),
                        false => json!({"name": p, "in": "path", "required": true, "type": "string", "uniqueItems": true}),
                    })
                    .collect();
                json!({"parameters": params})
            });
            item[op.method] = o;
        }
    }
    paths
}

fn info() -> Value {
    json!({"title": "Kubernetes", "version": format!("v{}.{}.0", super::discovery::MAJOR, super::discovery::MINOR)})
}

/// A v2 schema in v3 shape: refs under `#/components/schemas/`, and a
/// `$ref` with siblings (a field's own description) wrapped in `allOf`.
fn to_v3(v: &Value) -> Value {
    match v {
        Value::Object(o) => {
            let mut out: Map<String, Value> =
                o.iter().map(|(k, c)| (k.clone(), to_v3(c))).collect();
            if let Some(name) = schemas::ref_name(v) {
                let r = json!({"$ref": format!("#/components/schemas/{name}")});
                if o.len() == 1 {
                    return r;
                }
                out.remove("$ref");
                out.insert("allOf".into(), json!([r]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(to_v3).collect()),
        other => other.clone(),
    }
}

/// The v3 documents, serialized, with their hashes, by group-version path.
fn v3_documents() -> &'static BTreeMap<String, (Vec<u8>, String)> {
    static DOCS: OnceLock<BTreeMap<String, (Vec<u8>, String)>> = OnceLock::new();
    DOCS.get_or_init(|| {
        group_versions()
            .into_iter()
            .map(|(g, v)| {
                let roots: Vec<String> = resources::in_group(g, v)
                    .filter_map(schemas::definition_name)
                    .collect();
                let doc = json!({
                    "openapi": "3.0.0",
                    "info": info(),
                    "paths": paths(resources::in_group(g, v), true),
                    "components": {"schemas": to_v3(&Value::Object(schemas::reachable(&roots)))},
                });
                let bytes = serde_json::to_vec(&doc).expect("JSON serializes");
                let hash = hex::encode_upper(sha2::Sha256::digest(&bytes));
                (gv_path(g, v), (bytes, hash))
            })
            .collect()
    })
}

/// `/openapi/v3`: where each group-version's document is.
pub fn index() -> Value {
    let paths: Map<String, Value> = v3_documents()
        .iter()
        .map(|(p, (_, hash))| {
            (
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}),
            )
        })
        .collect();
    json!({"paths": paths})
}

/// `/openapi/v3/api/v1`, `/openapi/v3/apis/apps/v1` as JSON; None for
/// others.
pub fn document(path: &str) -> Option<&'static [u8]> {
    v3_documents()
        .get(path.trim_matches('/'))
        .map(|(b, _)| b.as_slice())
}

/// The swagger 2.0 document of every served kind.
pub fn swagger() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        json!({
            "swagger": "2.0",
            "info": info(),
            "paths": paths(resources::RESOURCES.iter(), false),
            "definitions": schemas::definitions(),
        })
    })
}

/// `/openapi/v2` as JSON text.
pub fn v2_json() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| serde_json::to_vec(swagger()).expect("JSON serializes"))
}

/// `/openapi/v2` as the gnostic protobuf.
pub fn v2_protobuf() -> &'static [u8] {
    use prost::Message;
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| document_pb(swagger()).encode_to_vec())
}

/// Whether a `/openapi/v2` request wants the protobuf (what client-go
/// asks for) rather than JSON.
pub fn wants_protobuf(accept: &str) -> bool {
    accept.contains("protobuf")
}

fn str_of(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_default().to_string()
}

fn extensions(v: &Value) -> Vec<pb::NamedAny> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("x-"))
        .map(|(k, x)| pb::NamedAny::of(k, x))
        .collect()
}

/// A swagger 2.0 schema as gnostic's message.
fn schema_pb(v: &Value) -> pb::Schema {
    let named = |m: &Value| -> Vec<pb::NamedSchema> {
        m.as_object()
            .into_iter()
            .flatten()
            .map(|(k, s)| pb::NamedSchema {
                name: k.clone(),
                value: Some(schema_pb(s)),
            })
            .collect()
    };
    pb::Schema {
        _ref: str_of(v, "$ref"),
        format: str_of(v, "format"),
        title: str_of(v, "title"),
        description: str_of(v, "description"),
        default: v.get("default").map(pb::Any::of),
        required: v["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(String::from))
            .collect(),
        r#enum: v["enum"]
            .as_array()
            .into_iter()
            .flatten()
            .map(pb::Any::of)
            .collect(),
        additional_properties: match v.get("additionalProperties") {
            Some(Value::Bool(b)) => Some(pb::additional_properties_item::Oneof::Boolean(*b)),
            Some(s @ Value::Object(_)) => Some(pb::additional_properties_item::Oneof::Schema(
                Box::new(schema_pb(s)),
            )),
            _ => None,
        }
        .map(|o| pb::AdditionalPropertiesItem { oneof: Some(o) }),
        r#type: match v.get("type") {
            Some(Value::String(t)) => Some(vec![t.clone()]),
            Some(Value::Array(ts)) => Some(
                ts.iter()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect(),
            ),
            _ => None,
        }
        .map(|value| pb::TypeItem { value }),
        items: v.get("items").map(|i| pb::ItemsItem {
            schema: vec![schema_pb(i)],
        }),
        all_of: v["allOf"]
            .as_array()
            .into_iter()
            .flatten()
            .map(schema_pb)
            .collect(),
        properties: v.get("properties").map(|p| pb::Properties {
            additional_properties: named(p),
        }),
        read_only: v["readOnly"].as_bool().unwrap_or(false),
        vendor_extension: extensions(v),
    }
}

fn parameter_pb(p: &Value) -> pb::ParametersItem {
    use pb::non_body_parameter::Oneof as NonBody;
    use pb::parameter::Oneof as Param;
    let (name, place) = (str_of(p, "name"), str_of(p, "in"));
    let required = p["required"].as_bool().unwrap_or(false);
    let unique_items = p["uniqueItems"].as_bool().unwrap_or(false);
    let param = match place.as_str() {
        "body" => Param::BodyParameter(Box::new(pb::BodyParameter {
            name,
            r#in: place,
            required,
            schema: p.get("schema").map(schema_pb),
            description: str_of(p, "description"),
        })),
        "path" => Param::NonBodyParameter(pb::NonBodyParameter {
            oneof: Some(NonBody::PathParameterSubSchema(
                pb::PathParameterSubSchema {
                    required,
                    r#in: place,
                    description: str_of(p, "description"),
                    name,
                    r#type: str_of(p, "type"),
                    unique_items,
                },
            )),
        }),
        _ => Param::NonBodyParameter(pb::NonBodyParameter {
            oneof: Some(NonBody::QueryParameterSubSchema(
                pb::QueryParameterSubSchema {
                    required,
                    r#in: place,
                    description: str_of(p, "description"),
                    name,
                    r#type: str_of(p, "type"),
                    unique_items,
                },
            )),
        }),
    };
    pb::ParametersItem {
        oneof: Some(pb::parameters_item::Oneof::Parameter(pb::Parameter {
            oneof: Some(param),
        })),
    }
}

fn parameters_pb(v: &Value) -> Vec<pb::ParametersItem> {
    v["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(parameter_pb)
        .collect()
}

fn operation_pb(o: &Value) -> Option<pb::Operation> {
    o.as_object()?;
    let responses = o["responses"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(code, r)| pb::NamedResponseValue {
            name: code.clone(),
            value: Some(pb::ResponseValue {
                oneof: Some(pb::response_value::Oneof::Response(pb::Response {
                    description: str_of(r, "description"),
                    schema: r.get("schema").map(|s| pb::SchemaItem {
                        oneof: Some(pb::schema_item::Oneof::Schema(schema_pb(s))),
                    }),
                })),
            }),
        })
        .collect();
    Some(pb::Operation {
        description: str_of(o, "description"),
        operation_id: str_of(o, "operationId"),
        produces: vec!["application/json".into(), "application/yaml".into()],
        consumes: vec!["*/*".into()],
        parameters: parameters_pb(o),
        responses: Some(pb::Responses {
            response_code: responses,
        }),
        schemes: vec!["https".into()],
        vendor_extension: extensions(o),
    })
}

/// The swagger 2.0 document as gnostic's message.
fn document_pb(doc: &Value) -> pb::Document {
    let path = doc["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, item)| pb::NamedPathItem {
            name: name.clone(),
            value: Some(pb::PathItem {
                get: operation_pb(&item["get"]),
                put: operation_pb(&item["put"]),
                post: operation_pb(&item["post"]),
                delete: operation_pb(&item["delete"]),
                patch: operation_pb(&item["patch"]),
                parameters: parameters_pb(item),
            }),
        })
        .collect();
    pb::Document {
        swagger: str_of(doc, "swagger"),
        info: Some(pb::Info {
            title: str_of(&doc["info"], "title"),
            version: str_of(&doc["info"], "version"),
        }),
        paths: Some(pb::Paths { path }),
        definitions: Some(pb::Definitions {
            additional_properties: doc["definitions"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, s)| pb::NamedSchema {
                    name: k.clone(),
                    value: Some(schema_pb(s)),
                })
                .collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn v3(path: &str) -> Value {
        serde_json::from_slice(document(path).expect("a document")).unwrap()
    }

    #[test]
    fn v3_patch_operations_advertise_field_validation() {
        let idx = index();
        let url = idx["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
        let d = v3("apis/apps/v1");
        let op = &d["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert_eq!(op["operationId"], "patchAppsV1NamespacedDeployment");
        assert!(op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation"));
        assert!(v3("api/v1")["paths"].get("/api/v1/nodes/{name}").is_some());
        assert!(document("apis/batch/v1").is_none());
    }

    #[test]
    fn v3_schemas_are_kube_openapi_shaped() {
        let d = v3("api/v1");
        let s = &d["components"]["schemas"];
        let pod = &s["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            json!([{"group": "", "kind": "Pod", "version": "v1"}])
        );
        // A field's own description beside a reference: allOf, as kube-openapi.
        assert_eq!(
            pod["properties"]["spec"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.PodSpec"
        );
        assert!(pod["properties"]["spec"]["description"].is_string());
        let ports = &s["io.k8s.api.core.v1.Container"]["properties"]["ports"];
        assert_eq!(
            ports["items"]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.ContainerPort"
        );
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
        // No v2 references are left, and every reference resolves.
        let text = serde_json::to_string(&d).unwrap();
        assert!(!text.contains("#/definitions/"));
        for r in text.split("\"#/components/schemas/").skip(1) {
            let name = &r[..r.find('"').unwrap()];
            assert!(s.get(name).is_some(), "{name} is not in the document");
        }
        // apps/v1 has its own kinds and what they reach, not core's kinds.
        let apps = v3("apis/apps/v1");
        assert!(apps["components"]["schemas"]
            .get("io.k8s.api.core.v1.PodTemplateSpec")
            .is_some());
        assert!(apps["components"]["schemas"]
            .get("io.k8s.api.core.v1.Service")
            .is_none());
    }

    #[test]
    fn v2_protobuf_decodes_to_what_kubectl_looks_for() {
        let started = std::time::Instant::now();
        let bytes = v2_protobuf();
        v3_documents();
        let cost = started.elapsed();
        eprintln!(
            "schemas and every OpenAPI document built in {cost:?} (v2 protobuf: {} bytes)",
            v2_protobuf().len()
        );
        assert!(
            cost < std::time::Duration::from_millis(500),
            "building every document took {cost:?}"
        );
        let doc = pb::Document::decode(bytes).unwrap();
        assert_eq!(doc.swagger, "2.0");
        // kubectl 1.27's query-parameter check: a PATCH whose GVK
        // extension (YAML) names the kind, with a fieldValidation param.
        let path = doc
            .paths
            .as_ref()
            .unwrap()
            .path
            .iter()
            .find(|p| p.name == "/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
            .unwrap();
        let patch = path.value.as_ref().unwrap().patch.as_ref().unwrap();
        let ext = patch
            .vendor_extension
            .iter()
            .find(|e| e.name == "x-kubernetes-group-version-kind")
            .unwrap();
        let gvk: Value = serde_yaml_ng::from_str(&ext.value.as_ref().unwrap().yaml).unwrap();
        assert_eq!(
            gvk,
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
        let names: Vec<String> = patch
            .parameters
            .iter()
            .filter_map(|p| match &p.oneof {
                Some(pb::parameters_item::Oneof::Parameter(pb::Parameter {
                    oneof: Some(pb::parameter::Oneof::NonBodyParameter(n)),
                })) => match &n.oneof {
                    Some(pb::non_body_parameter::Oneof::QueryParameterSubSchema(q)) => {
                        Some(q.name.clone())
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect();
        assert!(names.contains(&"fieldValidation".to_string()), "{names:?}");
        // Every served kind's definition carries its GVK.
        let defs = &doc.definitions.as_ref().unwrap().additional_properties;
        let pod = defs
            .iter()
            .find(|d| d.name == "io.k8s.api.core.v1.Pod")
            .unwrap();
        let pod = pod.value.as_ref().unwrap();
        assert!(pod
            .vendor_extension
            .iter()
            .any(|e| e.name == "x-kubernetes-group-version-kind"));
        let spec = pod
            .properties
            .as_ref()
            .unwrap()
            .additional_properties
            .iter()
            .find(|p| p.name == "spec")
            .unwrap();
        assert_eq!(
            spec.value.as_ref().unwrap()._ref,
            "#/definitions/io.k8s.api.core.v1.PodSpec"
        );
        assert_eq!(defs.len(), schemas::definitions().len());
        assert!(wants_protobuf(
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
        ));
        assert!(!wants_protobuf("application/json"));
    }
}
