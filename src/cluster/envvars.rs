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

use super::state::namespace;
use k8s_openapi::api::core::v1::Service;

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
pub fn for_pod(
    services: &[Service],
    pod_namespace: &str,
    enable_service_links: bool,
) -> Vec<(String, String)> {
    let mut chosen: Vec<&Service> = services
        .iter()
        .filter(|s| {
            let ns = namespace(&s.metadata);
            let is_master = ns == "default" && s.metadata.name.as_deref() == Some("kubernetes");
            is_master || (enable_service_links && ns == pod_namespace)
        })
        .collect();
    chosen.sort_by_key(|s| s.metadata.name.clone());
    chosen.into_iter().flat_map(for_service).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
