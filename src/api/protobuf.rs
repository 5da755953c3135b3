//! Kubernetes protobuf request bodies, which kubectl 1.32+ sends for
//! `create secret`, `create configmap`, `create serviceaccount`, `create
//! role(binding)`, `create token` and `auth can-i` (and does not retry as
//! JSON on a 415): the `k8s\0` magic, then a `runtime.Unknown` envelope whose `raw`
//! is the object. Decoded with kube-rs's generated bindings (`k8s-pb`) and
//! turned into the JSON the rest of the API works on. Other kinds are
//! refused with 415, as a server without them would.

use super::status::ApiError;
use base64::Engine;
use k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use prost::Message;
use serde_json::{json, Map, Value};

const MAGIC: &[u8] = b"k8s\0";

fn unsupported(why: String) -> ApiError {
    ApiError::new(415, "UnsupportedMediaType", why)
}

fn meta(m: Option<ObjectMeta>) -> Value {
    let m = m.unwrap_or_default();
    let mut v = Map::new();
    for (k, f) in [
        ("name", m.name),
        ("generateName", m.generate_name),
        ("namespace", m.namespace),
    ] {
        if let Some(f) = f.filter(|f| !f.is_empty()) {
            v.insert(k.into(), f.into());
        }
    }
    if !m.labels.is_empty() {
        v.insert("labels".into(), json!(m.labels));
    }
    if !m.annotations.is_empty() {
        v.insert("annotations".into(), json!(m.annotations));
    }
    Value::Object(v)
}

fn b64(map: std::collections::BTreeMap<String, Vec<u8>>) -> Value {
    let e = base64::engine::general_purpose::STANDARD;
    Value::Object(
        map.into_iter()
            .map(|(k, v)| (k, e.encode(v).into()))
            .collect(),
    )
}

fn rule(r: k8s_pb::api::rbac::v1::PolicyRule) -> Value {
    let mut v = json!({"verbs": r.verbs});
    for (k, l) in [
        ("apiGroups", r.api_groups),
        ("resources", r.resources),
        ("resourceNames", r.resource_names),
        ("nonResourceURLs", r.non_resource_ur_ls),
    ] {
        if !l.is_empty() {
            v[k] = json!(l);
        }
    }
    v
}

/// A protobuf body as the object's JSON.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| ApiError::bad_request("a protobuf body must start with the k8s\\0 magic"))?;
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(rest)
        .map_err(|e| ApiError::bad_request(format!("the protobuf envelope cannot be read: {e}")))?;
    let tm = unknown.type_meta.unwrap_or_default();
    let (api_version, kind) = (
        tm.api_version.unwrap_or_default(),
        tm.kind.unwrap_or_default(),
    );
    let raw = unknown.raw.unwrap_or_default();
    let bad =
        |e: prost::DecodeError| ApiError::bad_request(format!("the {kind} cannot be read: {e}"));
    let mut v = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Secret") => {
            let s = k8s_pb::api::core::v1::Secret::decode(raw.as_slice()).map_err(bad)?;
            let mut v = json!({"metadata": meta(s.metadata), "data": b64(s.data)});
            if !s.string_data.is_empty() {
                v["stringData"] = json!(s.string_data);
            }
            if let Some(t) = s.r#type {
                v["type"] = t.into();
            }
            if let Some(i) = s.immutable {
                v["immutable"] = i.into();
            }
            v
        }
        ("v1", "ConfigMap") => {
            let c = k8s_pb::api::core::v1::ConfigMap::decode(raw.as_slice()).map_err(bad)?;
            let mut v = json!({"metadata": meta(c.metadata), "data": c.data});
            if !c.binary_data.is_empty() {
                v["binaryData"] = b64(c.binary_data);
            }
            if let Some(i) = c.immutable {
                v["immutable"] = i.into();
            }
            v
        }
        ("v1", "ServiceAccount") => {
            let a = k8s_pb::api::core::v1::ServiceAccount::decode(raw.as_slice()).map_err(bad)?;
            let mut v = json!({"metadata": meta(a.metadata)});
            if let Some(m) = a.automount_service_account_token {
                v["automountServiceAccountToken"] = m.into();
            }
            v
        }
        ("rbac.authorization.k8s.io/v1", "Role" | "ClusterRole") => {
            // A Role's fields are a ClusterRole's first two.
            let r = k8s_pb::api::rbac::v1::ClusterRole::decode(raw.as_slice()).map_err(bad)?;
            json!({"metadata": meta(r.metadata), "rules": r.rules.into_iter().map(rule).collect::<Vec<_>>()})
        }
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => {
            let b = k8s_pb::api::rbac::v1::RoleBinding::decode(raw.as_slice()).map_err(bad)?;
            let r = b.role_ref.unwrap_or_default();
            json!({
                "metadata": meta(b.metadata),
                "roleRef": {"apiGroup": r.api_group, "kind": r.kind, "name": r.name},
                "subjects": b.subjects.into_iter().map(|s| {
                    let mut v = json!({"kind": s.kind, "name": s.name});
                    for (k, f) in [("apiGroup", s.api_group), ("namespace", s.namespace)] {
                        if let Some(f) = f.filter(|f| !f.is_empty()) {
                            v[k] = f.into();
                        }
                    }
                    v
                }).collect::<Vec<_>>(),
            })
        }
        ("authentication.k8s.io/v1", "TokenRequest") => {
            let t = k8s_pb::api::authentication::v1::TokenRequest::decode(raw.as_slice())
                .map_err(bad)?;
            let spec = t.spec.unwrap_or_default();
            let mut v = json!({"metadata": meta(t.metadata), "spec": {"audiences": spec.audiences}});
            if let Some(e) = spec.expiration_seconds {
                v["spec"]["expirationSeconds"] = e.into();
            }
            if let Some(b) = spec.bound_object_ref {
                v["spec"]["boundObjectRef"] = json!({"kind": b.kind, "apiVersion": b.api_version, "name": b.name, "uid": b.u_id});
            }
            v
        }
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => {
            let r = k8s_pb::api::authorization::v1::SelfSubjectAccessReview::decode(raw.as_slice())
                .map_err(bad)?;
            let spec = r.spec.unwrap_or_default();
            let mut v = json!({"metadata": meta(r.metadata), "spec": {}});
            if let Some(a) = spec.resource_attributes {
                v["spec"]["resourceAttributes"] = json!({
                    "namespace": a.namespace, "verb": a.verb, "group": a.group,
                    "version": a.version, "resource": a.resource,
                    "subresource": a.subresource, "name": a.name,
                });
            }
            if let Some(n) = spec.non_resource_attributes {
                v["spec"]["nonResourceAttributes"] = json!({"path": n.path, "verb": n.verb});
            }
            v
        }
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => {
            let r = k8s_pb::api::authorization::v1::SelfSubjectRulesReview::decode(raw.as_slice())
                .map_err(bad)?;
            let ns = r.spec.and_then(|s| s.namespace).unwrap_or_default();
            json!({"metadata": meta(r.metadata), "spec": {"namespace": ns}})
        }
        _ => {
            return Err(unsupported(format!(
                "{api_version} {kind} in protobuf is not supported by netlab: send it as application/json"
            )))
        }
    };
    v["apiVersion"] = api_version.into();
    v["kind"] = kind.into();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let u = k8s_pb::apimachinery::pkg::runtime::Unknown {
            type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
                api_version: Some("v1".into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut out = MAGIC.to_vec();
        out.extend(u.encode_to_vec());
        out
    }

    #[test]
    fn secrets_and_configmaps_as_kubectl_sends_them() {
        let s = k8s_pb::api::core::v1::Secret {
            metadata: Some(ObjectMeta {
                name: Some("nginxsecret".into()),
                ..Default::default()
            }),
            data: [("tls.crt".to_string(), b"CERT".to_vec())].into(),
            r#type: Some("kubernetes.io/tls".into()),
            ..Default::default()
        };
        let v = decode(&envelope("Secret", s.encode_to_vec())).unwrap();
        assert_eq!(v["metadata"]["name"], "nginxsecret");
        assert_eq!(v["data"]["tls.crt"], "Q0VSVA==");
        assert_eq!(v["type"], "kubernetes.io/tls");
        assert_eq!(v["kind"], "Secret");
        let c = k8s_pb::api::core::v1::ConfigMap {
            metadata: Some(ObjectMeta {
                name: Some("cm".into()),
                ..Default::default()
            }),
            data: [("default.conf".to_string(), "server {}".to_string())].into(),
            ..Default::default()
        };
        let v = decode(&envelope("ConfigMap", c.encode_to_vec())).unwrap();
        assert_eq!(v["data"]["default.conf"], "server {}");
        assert_eq!(decode(&envelope("Pod", vec![])).unwrap_err().code, 415);
        assert_eq!(decode(b"junk").unwrap_err().code, 400);
    }
}
