//! Service environment variables, exactly as the kubelet computes them
//! (pkg/kubelet/envvars): for every Service of the pod's namespace that has a
//! clusterIP when the pod starts, plus `kubernetes` from `default`.
//!
//! ```text
//! MY_NGINX_SERVICE_HOST=10.0.162.149
//! MY_NGINX_SERVICE_PORT=80                  first port
//! MY_NGINX_SERVICE_PORT_HTTP=80             per named port
//! MY_NGINX_PORT=tcp://10.0.162.149:80       first port
//! MY_NGINX_PORT_80_TCP=tcp://10.0.162.149:80
//! MY_NGINX_PORT_80_TCP_PROTO=tcp
//! MY_NGINX_PORT_80_TCP_PORT=80
//! MY_NGINX_PORT_80_TCP_ADDR=10.0.162.149
//! ```

//!
//! Also the container's own variables the kubelet resolves before it
//! starts a container: `envFrom` (secretRef, configMapRef, with a
//! prefix) and `env[].valueFrom` (secretKeyRef, configMapKeyRef,
//! fieldRef), see [`resolve_container`].

use super::state::namespace;
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Pod, Secret, Service};
use std::collections::BTreeMap;

/// `my-nginx` → `MY_NGINX`.
fn env_name(s: &str) -> String {
    s.to_uppercase().replace('-', "_")
}

/// The variables for one Service (none for headless or IP-less services).
pub fn for_service(svc: &Service) -> Vec<(String, String)> {
    let Some(spec) = &svc.spec else { return vec![] };
    let ip = spec.cluster_ip.clone().unwrap_or_default();
    if ip.is_empty() || ip == "None" {
        return vec![];
    }
    let name = env_name(svc.metadata.name.as_deref().unwrap_or_default());
    let ports = spec.ports.clone().unwrap_or_default();
    let mut out = vec![(format!("{name}_SERVICE_HOST"), ip.clone())];
    if let Some(first) = ports.first() {
        out.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
    }
    for p in &ports {
        if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
            out.push((
                format!("{name}_SERVICE_PORT_{}", env_name(pn)),
                p.port.to_string(),
            ));
        }
    }
    if let Some(first) = ports.first() {
        let proto = first.protocol.as_deref().unwrap_or("TCP").to_lowercase();
        out.push((
            format!("{name}_PORT"),
            format!("{proto}://{ip}:{}", first.port),
        ));
    }
    for p in &ports {
        let proto = p.protocol.as_deref().unwrap_or("TCP");
        let prefix = format!("{name}_PORT_{}_{}", p.port, proto.to_uppercase());
        let lower = proto.to_lowercase();
        out.push((prefix.clone(), format!("{lower}://{ip}:{}", p.port)));
        out.push((format!("{prefix}_PROTO"), lower));
        out.push((format!("{prefix}_PORT"), p.port.to_string()));
        out.push((format!("{prefix}_ADDR"), ip.clone()));
    }
    out
}

/// All service variables a pod in `pod_namespace` gets. With
/// `enableServiceLinks: false` only the `kubernetes` service's remain.
pub fn for_pod<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    pod_namespace: &str,
    enable_service_links: bool,
) -> Vec<(String, String)> {
    let mut chosen: Vec<&Service> = services
        .into_iter()
        .filter(|s| {
            let ns = namespace(&s.metadata);
            let is_master = ns == "default" && s.metadata.name.as_deref() == Some("kubernetes");
            is_master || (enable_service_links && ns == pod_namespace)
        })
        .collect();
    chosen.sort_by_key(|s| s.metadata.name.clone());
    chosen.into_iter().flat_map(for_service).collect()
}

/// The container with every `envFrom` and `valueFrom` replaced by plain
/// values, in the kubelet's order (envFrom sources, then `env`; a later
/// name wins when the runtime merges them). Resolved values are escaped
/// (`$` → `$$`) so that `$(VAR)` expansion leaves them as they are.
/// An error is the kubelet's CreateContainerConfigError message.
pub fn resolve_container<'a>(
    c: &Container,
    pod: &Pod,
    secrets: impl IntoIterator<Item = &'a Secret> + Copy,
    config_maps: impl IntoIterator<Item = &'a ConfigMap> + Copy,
) -> Result<Container, String> {
    let ns = namespace(&pod.metadata);
    let find_secret = |name: &str| {
        secrets
            .into_iter()
            .find(|s| s.metadata.name.as_deref() == Some(name) && namespace(&s.metadata) == ns)
    };
    let find_cm = |name: &str| {
        config_maps
            .into_iter()
            .find(|s| s.metadata.name.as_deref() == Some(name) && namespace(&s.metadata) == ns)
    };
    let secret_data = |s: &Secret| -> BTreeMap<String, String> {
        s.data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
            .collect()
    };
    let cm_data =
        |c: &ConfigMap| -> BTreeMap<String, String> { c.data.clone().unwrap_or_default() };
    let literal = |name: &str, value: &str| EnvVar {
        name: name.to_string(),
        value: Some(value.replace('$', "$$")),
        value_from: None,
    };
    let mut env = Vec::new();
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(r) = &from.secret_ref {
            match find_secret(&r.name) {
                Some(s) => secret_data(s),
                None if r.optional == Some(true) => continue,
                None => return Err(format!("secret {:?} not found", r.name)),
            }
        } else if let Some(r) = &from.config_map_ref {
            match find_cm(&r.name) {
                Some(c) => cm_data(c),
                None if r.optional == Some(true) => continue,
                None => return Err(format!("configmap {:?} not found", r.name)),
            }
        } else {
            continue;
        };
        for (k, v) in data {
            let name = format!("{prefix}{k}");
            // The kubelet skips keys that are not variable names.
            if valid_env_name(&name) {
                env.push(literal(&name, &v));
            }
        }
    }
    for e in c.env.iter().flatten() {
        let Some(from) = &e.value_from else {
            env.push(e.clone());
            continue;
        };
        let value = if let Some(r) = &from.secret_key_ref {
            match find_secret(&r.name) {
                Some(s) => match secret_data(s).get(&r.key) {
                    Some(v) => Some(v.clone()),
                    None if r.optional == Some(true) => None,
                    None => {
                        return Err(format!(
                            "couldn't find key {} in Secret {ns}/{}",
                            r.key, r.name
                        ))
                    }
                },
                None if r.optional == Some(true) => None,
                None => return Err(format!("secret {:?} not found", r.name)),
            }
        } else if let Some(r) = &from.config_map_key_ref {
            match find_cm(&r.name) {
                Some(c) => match cm_data(c).get(&r.key) {
                    Some(v) => Some(v.clone()),
                    None if r.optional == Some(true) => None,
                    None => {
                        return Err(format!(
                            "couldn't find key {} in ConfigMap {ns}/{}",
                            r.key, r.name
                        ))
                    }
                },
                None if r.optional == Some(true) => None,
                None => return Err(format!("configmap {:?} not found", r.name)),
            }
        } else if let Some(f) = &from.field_ref {
            Some(field(pod, &f.field_path)?)
        } else {
            return Err(format!(
                "env {}: only secretKeyRef, configMapKeyRef and fieldRef are supported",
                e.name
            ));
        };
        // An optional reference that is missing leaves the variable out.
        if let Some(v) = value {
            env.push(literal(&e.name, &v));
        }
    }
    let mut out = c.clone();
    out.env = (!env.is_empty()).then_some(env);
    out.env_from = None;
    Ok(out)
}

/// The downward API's `fieldRef` paths the kubelet resolves for env.
pub const FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "metadata.labels['…']",
    "metadata.annotations['…']",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

fn field(pod: &Pod, path: &str) -> Result<String, String> {
    let status = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let m = &pod.metadata;
    let keyed = |prefix: &str, map: &Option<BTreeMap<String, String>>| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?.to_string();
        Some(
            map.as_ref()
                .and_then(|m| m.get(&key))
                .cloned()
                .unwrap_or_default(),
        )
    };
    if let Some(v) = keyed("metadata.labels['", &m.labels) {
        return Ok(v);
    }
    if let Some(v) = keyed("metadata.annotations['", &m.annotations) {
        return Ok(v);
    }
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => namespace(m).to_string(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.node_name.unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .service_account_name
            .unwrap_or_else(|| "default".into()),
        "status.hostIP" | "status.hostIPs" => status.host_ip.unwrap_or_default(),
        "status.podIP" | "status.podIPs" => status.pod_ip.unwrap_or_default(),
        other => {
            return Err(format!(
                "fieldRef {other:?} is not supported: use one of {}",
                FIELD_PATHS.join(", ")
            ))
        }
    })
}

/// What the API server accepts as a variable name: printable ASCII without `=`.
pub fn valid_env_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'=')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_and_configmap_references() {
        let pod: Pod = serde_yaml_ng::from_str(
            "metadata: {name: p, namespace: default, labels: {app: web}}
spec: {nodeName: node-1, containers: []}
status: {podIP: 10.244.1.2, hostIP: 172.18.0.2}
",
        )
        .unwrap();
        let secret: Secret = serde_yaml_ng::from_str(
            "metadata: {name: creds, namespace: default}
data: {user: YWRtaW4=, pass: JChYKQ==}
",
        )
        .unwrap();
        let cm: ConfigMap = serde_yaml_ng::from_str(
            "metadata: {name: cfg, namespace: default}
data: {COLOR: blue, bad=name: x}
",
        )
        .unwrap();
        let c: Container = serde_yaml_ng::from_str(
            r#"
name: c
envFrom:
- configMapRef: {name: cfg}
  prefix: CFG_
- secretRef: {name: missing, optional: true}
env:
- {name: USER, valueFrom: {secretKeyRef: {name: creds, key: user}}}
- {name: PASS, valueFrom: {secretKeyRef: {name: creds, key: pass}}}
- {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
- {name: IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
- {name: APP, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
- {name: GONE, valueFrom: {configMapKeyRef: {name: cfg, key: nope, optional: true}}}
- {name: PLAIN, value: "$(USER)-x"}
"#,
        )
        .unwrap();
        let r = resolve_container(
            &c,
            &pod,
            std::slice::from_ref(&secret),
            std::slice::from_ref(&cm),
        )
        .unwrap();
        let env: Vec<(String, String)> = r
            .env
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.value.unwrap()))
            .collect();
        let want = [
            ("CFG_COLOR", "blue"),
            ("USER", "admin"),
            ("PASS", "$$(X)"), // escaped: not expanded later
            ("NODE", "node-1"),
            ("IP", "10.244.1.2"),
            ("APP", "web"),
            ("PLAIN", "$(USER)-x"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(env, want);
        assert!(r.env_from.is_none());

        let missing: Container = serde_yaml_ng::from_str(
            "name: c
env:
- {name: X, valueFrom: {secretKeyRef: {name: creds, key: nope}}}
",
        )
        .unwrap();
        let err = resolve_container(&missing, &pod, &[secret], &[cm]).unwrap_err();
        assert_eq!(err, "couldn't find key nope in Secret default/creds");
        let err = resolve_container(&missing, &pod, &[], &[]).unwrap_err();
        assert_eq!(err, "secret \"creds\" not found");
    }

    fn svc(yaml: &str) -> Service {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn kubelet_variables() {
        let s = svc("metadata:\n  name: my-nginx\n  namespace: default\nspec:\n  clusterIP: 10.0.162.149\n  ports:\n  - name: http\n    port: 80\n    protocol: TCP\n  - name: dns\n    port: 53\n    protocol: UDP\n");
        let vars: Vec<String> = for_service(&s)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            vars,
            [
                "MY_NGINX_SERVICE_HOST=10.0.162.149",
                "MY_NGINX_SERVICE_PORT=80",
                "MY_NGINX_SERVICE_PORT_HTTP=80",
                "MY_NGINX_SERVICE_PORT_DNS=53",
                "MY_NGINX_PORT=tcp://10.0.162.149:80",
                "MY_NGINX_PORT_80_TCP=tcp://10.0.162.149:80",
                "MY_NGINX_PORT_80_TCP_PROTO=tcp",
                "MY_NGINX_PORT_80_TCP_PORT=80",
                "MY_NGINX_PORT_80_TCP_ADDR=10.0.162.149",
                "MY_NGINX_PORT_53_UDP=udp://10.0.162.149:53",
                "MY_NGINX_PORT_53_UDP_PROTO=udp",
                "MY_NGINX_PORT_53_UDP_PORT=53",
                "MY_NGINX_PORT_53_UDP_ADDR=10.0.162.149",
            ]
        );
    }

    #[test]
    fn namespaces_links_and_headless() {
        let k = crate::cluster::services::kubernetes_service("10.0.0.0/16".parse().unwrap());
        let other = svc("metadata:\n  name: x\n  namespace: other\nspec:\n  clusterIP: 10.0.0.5\n  ports:\n  - port: 1\n");
        let headless = svc("metadata:\n  name: h\n  namespace: default\nspec:\n  clusterIP: None\n  ports:\n  - port: 1\n");
        let all = vec![k, other, headless];
        let names = |v: Vec<(String, String)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        let d = names(for_pod(&all, "default", true));
        assert!(d.contains(&"KUBERNETES_SERVICE_HOST".to_string()));
        assert!(d.contains(&"KUBERNETES_SERVICE_PORT_HTTPS".to_string()));
        assert!(!d.iter().any(|n| n.starts_with("X_") || n.starts_with("H_")));
        let o = names(for_pod(&all, "other", false));
        assert!(o.contains(&"KUBERNETES_SERVICE_HOST".to_string()));
        assert!(!o.iter().any(|n| n.starts_with("X_")), "links off");
        assert!(names(for_pod(&all, "other", true)).contains(&"X_SERVICE_HOST".to_string()));
    }
}
