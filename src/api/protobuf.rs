//! Kubernetes protobuf request bodies, which kubectl 1.32+ sends for
//! `create secret` and `create configmap` (and does not retry as JSON on a
//! 415): the `k8s\0` magic, then a `runtime.Unknown` envelope whose `raw`
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
