//! Validation of the Kubernetes objects of a lab, after the API server's rules
//! where netlab depends on them (names, selectors, ports, replicas).

use super::{LabConfig, LabError, Sourced};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, PodSpec, Secret, Service};
use std::collections::{BTreeMap, HashMap};

pub const DEFAULT_NAMESPACE: &str = "default";

/// RFC 1123 label: what Kubernetes requires of namespaces, container and node names.
pub fn dns_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err("must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit".into())
    }
}

/// RFC 1123 subdomain: what Kubernetes requires of most object names.
pub fn dns_subdomain(s: &str) -> Result<(), String> {
    let ok = !s.is_empty() && s.len() <= 253 && s.split('.').all(|part| dns_label(part).is_ok());
    if ok {
        Ok(())
    } else {
        Err("must be a lowercase RFC 1123 subdomain (letters, digits, '-' and '.', at most 253 characters)".into())
    }
}

pub fn objects(
    config: &LabConfig,
    deployments: &mut [Sourced<Deployment>],
    pods: &mut [Sourced<Pod>],
    services: &mut [Sourced<Service>],
    secrets: &mut [Sourced<Secret>],
    config_maps: &mut [Sourced<ConfigMap>],
    errors: &mut Vec<LabError>,
) {
    let mut seen: HashMap<(String, String, String), super::Source> = HashMap::new();
    let mut check_name = |kind: &str,
                          at: &super::Source,
                          meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
                          errors: &mut Vec<LabError>|
     -> Option<String> {
        let Some(name) = meta.name.clone() else {
            errors.push(LabError::invalid(
                at,
                format!("{kind}/<unnamed>"),
                "metadata.name is required",
            ));
            return None;
        };
        let object = format!("{kind}/{name}");
        if let Err(m) = dns_subdomain(&name) {
            errors.push(LabError::invalid(at, &object, format!("metadata.name {m}")));
            return None;
        }
        let ns = meta
            .namespace
            .get_or_insert_with(|| DEFAULT_NAMESPACE.to_string())
            .clone();
        if let Err(m) = dns_label(&ns) {
            errors.push(LabError::invalid(
                at,
                &object,
                format!("metadata.namespace {m}"),
            ));
        }
        let key = (kind.to_string(), ns.clone(), name.clone());
        if let Some(first) = seen.get(&key) {
            errors.push(LabError::invalid(
                at,
                &object,
                format!("defined twice in namespace {ns} (first at {first}): names must be unique per kind and namespace"),
            ));
        } else {
            seen.insert(key, at.clone());
        }
        Some(object)
    };

    for d in deployments.iter_mut() {
        let Some(object) = check_name("Deployment", &d.at, &mut d.object.metadata, errors) else {
            continue;
        };
        let at = &d.at;
        let Some(spec) = d.object.spec.as_mut() else {
            errors.push(LabError::invalid(at, &object, "spec is required"));
            continue;
        };
        let replicas = *spec.replicas.get_or_insert(1);
        if replicas < 0 {
            errors.push(LabError::invalid(
                at,
                &object,
                format!("spec.replicas: {replicas} is negative: use 0 or more"),
            ));
        }
        let labels: BTreeMap<String, String> = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let selector = spec.selector.match_labels.clone().unwrap_or_default();
        if selector.is_empty() && spec.selector.match_expressions.is_none() {
            errors.push(LabError::invalid(
                at,
                &object,
                "spec.selector.matchLabels is required (apps/v1): copy the template's labels there",
            ));
        } else if let Some((k, v)) = selector.iter().find(|(k, v)| labels.get(*k) != Some(v)) {
            errors.push(LabError::invalid(
                at,
                &object,
                format!("spec.selector {k}={v} does not match spec.template.metadata.labels: the Deployment would never own its pods"),
            ));
        }
        match spec.template.spec.as_ref() {
            Some(pod_spec) => {
                pod_spec_errors(config, pod_spec, "spec.template.spec", at, &object, errors)
            }
            None => errors.push(LabError::invalid(
                at,
                &object,
                "spec.template.spec is required",
            )),
        }
    }

    for s in services.iter_mut() {
        if let Some(object) = check_name("Service", &s.at, &mut s.object.metadata, errors) {
            if let Err(m) = dns_label(s.object.metadata.name.as_deref().unwrap_or_default()) {
                errors.push(LabError::invalid(
                    &s.at,
                    &object,
                    format!("metadata.name {m} (service names are DNS labels)"),
                ));
            }
        }
    }

    for s in secrets.iter_mut() {
        let Some(object) = check_name("Secret", &s.at, &mut s.object.metadata, errors) else {
            continue;
        };
        match crate::cluster::secrets::normalize_secret(s.object.clone()) {
            Ok(normal) => s.object = normal,
            Err(m) => errors.push(LabError::invalid(&s.at, &object, m)),
        }
    }

    for c in config_maps.iter_mut() {
        let Some(object) = check_name("ConfigMap", &c.at, &mut c.object.metadata, errors) else {
            continue;
        };
        if let Err(m) = crate::cluster::secrets::validate_config_map(&c.object) {
            errors.push(LabError::invalid(&c.at, &object, m));
        }
    }

    for p in pods.iter_mut() {
        let Some(object) = check_name("Pod", &p.at, &mut p.object.metadata, errors) else {
            continue;
        };
        match p.object.spec.as_ref() {
            Some(spec) => pod_spec_errors(config, spec, "spec", &p.at, &object, errors),
            None => errors.push(LabError::invalid(&p.at, &object, "spec is required")),
        }
    }
}

/// ServiceAccounts and RBAC's objects: kube-apiserver's rules
/// (`AccessObject::validate`), and each once per kind and namespace.
pub fn access(
    objects: &mut [Sourced<crate::cluster::access::AccessObject>],
    errors: &mut Vec<LabError>,
) {
    let mut seen: HashMap<(&'static str, String, String), super::Source> = HashMap::new();
    for o in objects.iter_mut() {
        let kind = o.object.kind();
        let name = o.object.meta().name.clone().unwrap_or_default();
        let object = format!("{kind}/{name}");
        if let Err(m) = o.object.validate() {
            errors.push(LabError::invalid(&o.at, &object, m));
            continue;
        }
        let ns = o.object.meta().namespace.clone().unwrap_or_default();
        match seen.get(&(kind, ns.clone(), name.clone())) {
            Some(first) => errors.push(LabError::invalid(
                &o.at,
                &object,
                format!(
                    "defined twice (first at {first}): names must be unique per kind and namespace"
                ),
            )),
            None => {
                seen.insert((kind, ns, name), o.at.clone());
            }
        }
    }
}

fn pod_spec_errors(
    config: &LabConfig,
    spec: &PodSpec,
    path: &str,
    at: &super::Source,
    object: &str,
    errors: &mut Vec<LabError>,
) {
    let mut bad = |m: String| errors.push(LabError::invalid(at, object, m));
    if spec.containers.is_empty() {
        bad(format!(
            "{path}.containers: a pod needs at least one container"
        ));
    }
    if let Some(node) = &spec.node_name {
        if !config.nodes.contains(node) {
            bad(format!(
                "{path}.nodeName: no node {node:?} in this lab (nodes: {})",
                config.nodes.join(", ")
            ));
        }
    }
    if let Err(m) = crate::cluster::dns::validate_pod_dns(spec) {
        bad(m.replacen("spec.", &format!("{path}."), 1));
    }
    for (field, value) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
        if let Some(v) = value {
            if let Err(m) = dns_label(v) {
                bad(format!("{path}.{field} {v:?} {m}"));
            }
        }
    }
    for m in crate::cluster::volumes::validate(spec, path) {
        bad(m);
    }
    for m in host_namespace_errors(spec, path) {
        bad(m);
    }
    for m in crate::cluster::security::validate(spec, path) {
        bad(m);
    }
    for m in crate::cluster::resources::validate(spec, path) {
        bad(m);
    }
    let mut names = Vec::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let cpath = format!("{path}.containers[{i}]");
        if let Err(m) = dns_label(&c.name) {
            bad(format!("{cpath}.name {:?} {m}", c.name));
        }
        if names.contains(&c.name) {
            bad(format!("{cpath}.name {:?} is used twice", c.name));
        }
        names.push(c.name.clone());
        container_errors(c, &cpath, &mut bad);
    }
}

/// `hostPID` and `hostIPC` share the node's process and IPC namespaces. A
/// netlab node is a network namespace only: its processes and IPC are the
/// host's, so sharing them would let a pod see and signal every process of
/// the machine (other labs', the user's). Refused rather than ignored.
/// `hostNetwork` is the node's network namespace, which netlab has: its
/// ports are checked as the API server does (see `cluster::host_network`),
/// and so are `hostPort`s (range, hostIP an address).
fn host_namespace_errors(spec: &PodSpec, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (field, on) in [("hostPID", spec.host_pid), ("hostIPC", spec.host_ipc)] {
        if on == Some(true) {
            out.push(format!(
                "{path}.{field}: true is not supported by netlab: a netlab node has no process or IPC namespace of its own (only a network namespace), so the node's would be the host machine's; remove {field}"
            ));
        }
    }
    out.extend(crate::cluster::host_network::validate(spec, path));
    for (i, c) in spec.containers.iter().enumerate() {
        for (j, p) in c.ports.iter().flatten().enumerate() {
            let ppath = format!("{path}.containers[{i}].ports[{j}]");
            if let Some(hp) = p.host_port.filter(|hp| !(0..=65535).contains(hp)) {
                out.push(format!(
                    "{ppath}.hostPort: Invalid value: {hp}: must be between 1 and 65535, inclusive"
                ));
            }
            if let Some(ip) = p.host_ip.as_deref().filter(|ip| !ip.is_empty()) {
                if ip.parse::<std::net::Ipv4Addr>().is_err() {
                    out.push(format!(
                        "{ppath}.hostIP: Invalid value: \"{ip}\": must be an IPv4 address (netlab's nodes have IPv4 addresses only)"
                    ));
                }
            }
        }
    }
    out
}

/// Probes as the API server validates them: one handler, the handlers
/// netlab runs, and a successThreshold of 1 for liveness and startup.
fn probe_errors(c: &Container, cpath: &str, bad: &mut impl FnMut(String)) {
    let probes = [
        ("livenessProbe", &c.liveness_probe),
        ("readinessProbe", &c.readiness_probe),
        ("startupProbe", &c.startup_probe),
    ];
    for (field, probe) in probes {
        let Some(p) = probe else { continue };
        let ppath = format!("{cpath}.{field}");
        if p.grpc.is_some() {
            bad(format!(
                "{ppath}.grpc is not supported by netlab: use httpGet, tcpSocket or exec"
            ));
        }
        let handlers = [
            p.http_get.is_some(),
            p.tcp_socket.is_some(),
            p.exec.is_some(),
        ]
        .iter()
        .filter(|h| **h)
        .count();
        if handlers == 0 && p.grpc.is_none() {
            bad(format!(
                "{ppath}: Required value: must specify a handler type (httpGet, tcpSocket or exec)"
            ));
        } else if handlers > 1 {
            bad(format!(
                "{ppath}: Forbidden: may not specify more than 1 handler type"
            ));
        }
        for (name, v) in [
            ("initialDelaySeconds", p.initial_delay_seconds),
            ("periodSeconds", p.period_seconds),
            ("timeoutSeconds", p.timeout_seconds),
            ("successThreshold", p.success_threshold),
            ("failureThreshold", p.failure_threshold),
        ] {
            if v.is_some_and(|v| v < 0) {
                bad(format!(
                    "{ppath}.{name}: Invalid value: {}: must be greater than or equal to 0",
                    v.unwrap_or_default()
                ));
            }
        }
        if field != "readinessProbe" && p.success_threshold.is_some_and(|s| s != 1) {
            bad(format!(
                "{ppath}.successThreshold: Invalid value: {}: must be 1",
                p.success_threshold.unwrap_or_default()
            ));
        }
    }
}

fn container_errors(c: &Container, cpath: &str, bad: &mut impl FnMut(String)) {
    probe_errors(c, cpath, bad);
    if c.image.as_deref().unwrap_or("").trim().is_empty() {
        bad(format!("{cpath}.image is required"));
    }
    for (j, p) in c.ports.iter().flatten().enumerate() {
        if !(1..=65535).contains(&p.container_port) {
            bad(format!(
                "{cpath}.ports[{j}].containerPort {} is not a port (1-65535)",
                p.container_port
            ));
        }
        if let Some(proto) = &p.protocol {
            if !["TCP", "UDP", "SCTP"].contains(&proto.as_str()) {
                bad(format!(
                    "{cpath}.ports[{j}].protocol {proto:?}: use TCP, UDP or SCTP"
                ));
            }
        }
    }
    for (j, e) in c.env.iter().flatten().enumerate() {
        let epath = format!("{cpath}.env[{j}]");
        if !crate::cluster::envvars::valid_env_name(&e.name) {
            bad(format!(
                "{epath}.name {:?} must be printable ASCII without '='",
                e.name
            ));
        }
        let Some(from) = &e.value_from else { continue };
        if e.value.as_deref().is_some_and(|v| !v.is_empty()) {
            bad(format!("{epath}: give value or valueFrom, not both"));
        }
        if from.resource_field_ref.is_some() {
            bad(format!(
                "{epath}.valueFrom.resourceFieldRef is not supported by netlab (pods have no resource limits here)"
            ));
        }
        if let Some(f) = &from.field_ref {
            let p = f.field_path.as_str();
            let keyed = (p.starts_with("metadata.labels['")
                || p.starts_with("metadata.annotations['"))
                && p.ends_with("']");
            if !keyed && !crate::cluster::envvars::FIELD_PATHS.contains(&p) {
                bad(format!(
                    "{epath}.valueFrom.fieldRef.fieldPath {p:?} is not supported: use one of {}",
                    crate::cluster::envvars::FIELD_PATHS.join(", ")
                ));
            }
        }
    }
    if let Some(policy) = &c.image_pull_policy {
        if !["Always", "IfNotPresent", "Never"].contains(&policy.as_str()) {
            bad(format!(
                "{cpath}.imagePullPolicy {policy:?}: use Always, IfNotPresent or Never"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        assert!(dns_label("my-nginx").is_ok());
        assert!(dns_label("My").is_err());
        assert!(dns_label("a.b").is_err());
        assert!(dns_subdomain("a.b-c").is_ok());
        assert!(dns_subdomain("a..b").is_err());
        assert!(dns_subdomain("").is_err());
    }

    #[test]
    fn host_pid_and_ipc_are_refused_with_why() {
        let table: &[(Option<bool>, Option<bool>, &[&str])] = &[
            (None, None, &[]),
            (Some(false), Some(false), &[]),
            (Some(true), None, &["spec.hostPID: true is not supported"]),
            (None, Some(true), &["spec.hostIPC: true is not supported"]),
            (Some(true), Some(true), &["spec.hostPID", "spec.hostIPC"]),
        ];
        for (pid, ipc, want) in table {
            let spec = PodSpec {
                host_pid: *pid,
                host_ipc: *ipc,
                ..Default::default()
            };
            let got = host_namespace_errors(&spec, "spec");
            assert_eq!(got.len(), want.len(), "{got:?}");
            for (g, w) in got.iter().zip(want.iter()) {
                assert!(g.starts_with(w) && g.contains("host machine"), "{g}");
            }
        }
        let spec: PodSpec = serde_yaml_ng::from_str(
            "hostNetwork: true\ncontainers:\n- name: c\n  ports: [{containerPort: 80}, {containerPort: 81, hostPort: 8081}]\n",
        )
        .unwrap();
        // hostNetwork is built: only a hostPort other than its
        // containerPort is refused.
        let got = host_namespace_errors(&spec, "spec.template.spec");
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with("spec.template.spec.containers[0].ports[1].hostPort: Invalid value: 8081: must match `containerPort`"),
            "{}",
            got[0]
        );
        let spec: PodSpec = serde_yaml_ng::from_str(
            "containers:\n- name: c\n  ports: [{containerPort: 81, hostPort: 70000}, {containerPort: 82, hostPort: 82, hostIP: nope}]\n",
        )
        .unwrap();
        let got = host_namespace_errors(&spec, "spec");
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].starts_with("spec.containers[0].ports[0].hostPort: Invalid value: 70000"));
        assert!(got[1].starts_with("spec.containers[0].ports[1].hostIP: Invalid value: \"nope\""));
    }

    #[test]
    fn probes_are_validated_as_the_api_server_does() {
        let y = |probe: &str| -> Vec<String> {
            let c: Container =
                serde_yaml_ng::from_str(&format!("name: c\nimage: nginx\nlivenessProbe:\n{probe}"))
                    .unwrap();
            let mut out = Vec::new();
            probe_errors(&c, "spec.containers[0]", &mut |m| out.push(m));
            out
        };
        let table: &[(&str, Option<&str>)] = &[
            ("  tcpSocket: {port: 80}\n", None),
            ("  exec: {command: [true]}\n  failureThreshold: 1\n", None),
            ("  periodSeconds: 1\n", Some("must specify a handler type")),
            (
                "  tcpSocket: {port: 80}\n  exec: {command: [true]}\n",
                Some("more than 1 handler"),
            ),
            (
                "  tcpSocket: {port: 80}\n  successThreshold: 2\n",
                Some("livenessProbe.successThreshold: Invalid value: 2: must be 1"),
            ),
            (
                "  tcpSocket: {port: 80}\n  periodSeconds: -1\n",
                Some("periodSeconds: Invalid value: -1"),
            ),
            ("  grpc: {port: 80}\n", Some("grpc is not supported")),
        ];
        for (probe, want) in table {
            let got = y(probe);
            match want {
                None => assert!(got.is_empty(), "{probe}: {got:?}"),
                Some(w) => assert!(got.iter().any(|g| g.contains(w)), "{probe}: {got:?}"),
            }
        }
    }
}
