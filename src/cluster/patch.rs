//! `kubectl patch` and `kubectl edit` on the object store: an object as
//! JSON, the three patch types (strategic merge, JSON merge patch RFC
//! 7386, JSON patch RFC 6902), and the update that puts it back through
//! the same validation as `apply`. Pure.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// kubectl's default: a merge patch whose lists of named things merge
    /// by their key (containers and env by `name`, ports by `port` or
    /// `containerPort`, volumeMounts by `mountPath`) instead of replacing.
    Strategic,
    Merge,
    Json,
}

impl std::str::FromStr for PatchType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "strategic" => Ok(PatchType::Strategic),
            "merge" => Ok(PatchType::Merge),
            "json" => Ok(PatchType::Json),
            other => Err(format!(
                "--type {other:?}: use strategic (the default), merge or json"
            )),
        }
    }
}

/// Applies `patch` (JSON text, or YAML as kubectl accepts) to `doc`.
pub fn apply(doc: &mut Value, patch: &str, kind: PatchType) -> Result<(), String> {
    let p: Value = serde_json::from_str(patch)
        .or_else(|_| serde_yaml_ng::from_str(patch))
        .map_err(|e| format!("the patch is not JSON (or YAML): {e}"))?;
    match kind {
        PatchType::Merge => {
            if !p.is_object() {
                return Err(
                    "a merge patch must be an object, e.g. {\"spec\":{\"type\":\"NodePort\"}}"
                        .into(),
                );
            }
            json_patch::merge(doc, &p);
        }
        PatchType::Strategic => {
            if !p.is_object() {
                return Err("a strategic merge patch must be an object, e.g. {\"spec\":{\"type\":\"NodePort\"}}".into());
            }
            strategic(doc, &p, "");
        }
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(p).map_err(|e| {
                format!("a JSON patch is a list of operations, e.g. [{{\"op\":\"replace\",\"path\":\"/spec/type\",\"value\":\"NodePort\"}}]: {e}")
            })?;
            json_patch::patch(doc, &ops)
                .map_err(|e| format!("the JSON patch does not apply: {e}"))?;
        }
    }
    Ok(())
}

/// The merge key of a list under `field`, judged by its items.
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    let has = |k: &str| items.iter().all(|i| i.get(k).is_some());
    match field {
        "containers" | "initContainers" | "env" | "volumes" | "imagePullSecrets" => {
            has("name").then_some("name")
        }
        "ports" if has("containerPort") => Some("containerPort"),
        "ports" if has("port") => Some("port"),
        "volumeMounts" => has("mountPath").then_some("mountPath"),
        _ => None,
    }
}

fn strategic(doc: &mut Value, patch: &Value, field: &str) {
    match (doc, patch) {
        (Value::Object(d), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    d.remove(k);
                } else {
                    strategic(d.entry(k.clone()).or_insert(Value::Null), v, k);
                }
            }
        }
        (Value::Array(d), Value::Array(p)) => {
            let Some(key) = merge_key(field, p).filter(|k| merge_key(field, d) == Some(k)) else {
                *d = p.clone();
                return;
            };
            for item in p {
                let deleting = item.get("$patch").and_then(Value::as_str) == Some("delete");
                match d.iter().position(|x| x.get(key) == item.get(key)) {
                    Some(i) if deleting => {
                        d.remove(i);
                    }
                    Some(i) => strategic(&mut d[i], item, ""),
                    None if deleting => {}
                    None => d.push(item.clone()),
                }
            }
        }
        (d, p) => *d = p.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc() -> Value {
        json!({"metadata": {"name": "my-nginx"}, "spec": {"type": "NodePort", "clusterIP": "10.0.0.5",
            "ports": [{"name": "http", "port": 8080, "nodePort": 31704}, {"name": "https", "port": 443}]}})
    }

    #[test]
    fn the_tutorials_type_change() {
        for (kind, patch) in [
            (PatchType::Strategic, r#"{"spec":{"type":"LoadBalancer"}}"#),
            (PatchType::Merge, r#"{"spec":{"type":"LoadBalancer"}}"#),
            (
                PatchType::Json,
                r#"[{"op":"replace","path":"/spec/type","value":"LoadBalancer"}]"#,
            ),
            (PatchType::Strategic, "spec:\n  type: LoadBalancer\n"),
        ] {
            let mut d = svc();
            apply(&mut d, patch, kind).unwrap();
            assert_eq!(d["spec"]["type"], "LoadBalancer");
            assert_eq!(d["spec"]["clusterIP"], "10.0.0.5", "kept");
            assert_eq!(d["spec"]["ports"].as_array().unwrap().len(), 2);
        }
    }

    #[test]
    fn lists_merge_by_key_only_in_strategic_mode() {
        let patch = r#"{"spec":{"ports":[{"port":443,"nodePort":32000}]}}"#;
        let mut d = svc();
        apply(&mut d, patch, PatchType::Strategic).unwrap();
        let ports = d["spec"]["ports"].as_array().unwrap();
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[1]["nodePort"], 32000);
        assert_eq!(ports[1]["name"], "https");
        let mut d = svc();
        apply(&mut d, patch, PatchType::Merge).unwrap();
        assert_eq!(
            d["spec"]["ports"].as_array().unwrap().len(),
            1,
            "merge patch replaces lists"
        );
        let mut d = svc();
        apply(
            &mut d,
            r#"{"spec":{"ports":[{"port":8080,"$patch":"delete"}]}}"#,
            PatchType::Strategic,
        )
        .unwrap();
        assert_eq!(d["spec"]["ports"].as_array().unwrap().len(), 1);
        let mut d = svc();
        apply(
            &mut d,
            r#"{"spec":{"clusterIP":null}}"#,
            PatchType::Strategic,
        )
        .unwrap();
        assert!(d["spec"].get("clusterIP").is_none());
    }

    #[test]
    fn bad_patches() {
        let mut d = svc();
        assert!(apply(&mut d, "{not json", PatchType::Strategic).is_err());
        assert!(apply(&mut d, "[1]", PatchType::Merge).is_err());
        assert!(apply(
            &mut d,
            r#"[{"op":"remove","path":"/nope"}]"#,
            PatchType::Json
        )
        .unwrap_err()
        .contains("does not apply"));
    }
}
