//! Kubernetes protobuf request bodies, which kubectl 1.32+ sends for every
//! `kubectl create KIND` (namespace, deployment, service, secret, configmap,
//! serviceaccount, role(binding), token) and for `auth can-i`, and does not
//! retry as JSON on a 415: the `k8s\0` magic, then a `runtime.Unknown`
//! envelope whose `raw` is the object. Decoded with kube-rs's generated
//! bindings (`k8s-pb`) and turned into the JSON the rest of the API works on.
//!
//! Each message's conversion is one `object!` line naming all its fields, by
//! what happens to them: `put` (Go's zero value is left out, as `omitempty`
//! leaves it out of JSON), `keep` (a Go pointer, where zero is a value:
//! `replicas: 0`), `skip` (set by the server: status, timestamps) and
//! `refuse` (a field netlab does not read in protobuf: the request is
//! refused with 415 naming it, never stored without it). The struct is
//! destructured without `..`, so a field that a newer `k8s-pb` adds fails
//! the build until it is sorted. Kinds not listed are refused with 415, as a
//! server without them would.

use super::status::ApiError;
use base64::Engine;
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::authentication::v1 as authn;
use k8s_pb::api::authorization::v1 as authz;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::networking::v1 as networking;
use k8s_pb::api::rbac::v1 as rbac;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

const MAGIC: &[u8] = b"k8s\0";

fn unsupported(why: String) -> ApiError {
    ApiError::new(415, "UnsupportedMediaType", why)
}

/// A field's JSON name: the camelCase of prost's snake_case, but for the
/// names Kubernetes spells with an initialism.
fn json_name(field: &str) -> String {
    let special = match field {
        "r#type" => "type",
        "cluster_ip" => "clusterIP",
        "cluster_ips" => "clusterIPs",
        "external_ips" => "externalIPs",
        "load_balancer_ip" => "loadBalancerIP",
        "client_ip" => "clientIP",
        "host_ip" => "hostIP",
        "host_pid" => "hostPID",
        "host_ipc" => "hostIPC",
        "u_id" => "uid",
        "non_resource_ur_ls" => "nonResourceURLs",
        "set_hostname_as_fqdn" => "setHostnameAsFQDN",
        _ => "",
    };
    if !special.is_empty() {
        return special.into();
    }
    let mut out = String::with_capacity(field.len());
    let mut upper = false;
    for c in field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn path(at: &str, name: &str) -> String {
    if at.is_empty() {
        json_name(name)
    } else {
        format!("{at}.{}", json_name(name))
    }
}

/// A message as a JSON object (the `object!` lines below).
trait Object {
    fn object(self, at: &str) -> Result<Map<String, Value>, ApiError>;
}

/// A field as JSON; `None` leaves it out.
trait Field {
    fn json(self, at: &str, name: &str) -> Result<Option<Value>, ApiError>;
}

impl Field for Option<String> {
    fn json(self, _: &str, _: &str) -> Result<Option<Value>, ApiError> {
        Ok(self.filter(|s| !s.is_empty()).map(Value::from))
    }
}

macro_rules! numbers {
    ($($t:ty),*) => {$(
        impl Field for Option<$t> {
            fn json(self, _: &str, _: &str) -> Result<Option<Value>, ApiError> {
                Ok(self.filter(|n| *n != <$t>::default()).map(Value::from))
            }
        }
        impl Field for Keep<Option<$t>> {
            fn json(self, _: &str, _: &str) -> Result<Option<Value>, ApiError> {
                Ok(self.0.map(Value::from))
            }
        }
    )*};
}

/// A Go pointer field, whose zero value is a value.
struct Keep<T>(T);

numbers!(i32, i64, bool);

impl Field for Vec<String> {
    fn json(self, _: &str, _: &str) -> Result<Option<Value>, ApiError> {
        Ok((!self.is_empty()).then(|| self.into()))
    }
}

impl Field for BTreeMap<String, String> {
    fn json(self, _: &str, _: &str) -> Result<Option<Value>, ApiError> {
        Ok((!self.is_empty())
            .then(|| Value::Object(self.into_iter().map(|(k, v)| (k, v.into())).collect())))
    }
}

/// `[]byte` values, base64 in JSON.
impl Field for BTreeMap<String, Vec<u8>> {
    fn json(self, _: &str, _: &str) -> Result<Option<Value>, ApiError> {
        let e = base64::engine::general_purpose::STANDARD;
        Ok((!self.is_empty()).then(|| {
            Value::Object(
                self.into_iter()
                    .map(|(k, v)| (k, e.encode(v).into()))
                    .collect(),
            )
        }))
    }
}

impl Field for BTreeMap<String, Quantity> {
    fn json(self, _: &str, _: &str) -> Result<Option<Value>, ApiError> {
        Ok((!self.is_empty()).then(|| {
            Value::Object(
                self.into_iter()
                    .map(|(k, q)| (k, q.string.unwrap_or_default().into()))
                    .collect(),
            )
        }))
    }
}

fn int_or_string(v: IntOrString) -> Value {
    match v.r#type {
        Some(1) => v.str_val.unwrap_or_default().into(),
        _ => v.int_val.unwrap_or_default().into(),
    }
}

/// A plain `IntOrString` (a Service's targetPort): 0 is unset.
impl Field for Option<IntOrString> {
    fn json(self, _: &str, _: &str) -> Result<Option<Value>, ApiError> {
        Ok(self.map(int_or_string).filter(|v| v != &Value::from(0)))
    }
}

/// A `*IntOrString` (maxSurge): 0 is a value.
impl Field for Keep<Option<IntOrString>> {
    fn json(self, _: &str, _: &str) -> Result<Option<Value>, ApiError> {
        Ok(self.0.map(int_or_string))
    }
}

impl<M: Object> Field for Option<M> {
    fn json(self, at: &str, name: &str) -> Result<Option<Value>, ApiError> {
        self.map(|m| m.object(&path(at, name)).map(Value::Object))
            .transpose()
    }
}

impl<M: Object> Field for Vec<M> {
    fn json(self, at: &str, name: &str) -> Result<Option<Value>, ApiError> {
        if self.is_empty() {
            return Ok(None);
        }
        let at = path(at, name);
        self.into_iter()
            .enumerate()
            .map(|(i, m)| m.object(&format!("{at}[{i}]")).map(Value::Object))
            .collect::<Result<Vec<_>, _>>()
            .map(|l| Some(Value::Array(l)))
    }
}

/// Whether a refused field was sent: any value but Go's zero value.
trait Sent {
    fn sent(&self) -> bool;
}

impl<M: Message> Sent for Option<M> {
    fn sent(&self) -> bool {
        self.as_ref().is_some_and(|m| m.encoded_len() > 0)
    }
}

impl<M> Sent for Vec<M> {
    fn sent(&self) -> bool {
        !self.is_empty()
    }
}

impl<K, V> Sent for BTreeMap<K, V> {
    fn sent(&self) -> bool {
        !self.is_empty()
    }
}

macro_rules! object {
    ($t:ty {
        $(put: $($put:ident),* ;)?
        $(keep: $($keep:ident),* ;)?
        $(skip: $($skip:ident),* ;)?
        $(refuse: $($refuse:ident),* ;)?
    }) => {
        impl Object for $t {
            #[allow(unused_variables)]
            fn object(self, at: &str) -> Result<Map<String, Value>, ApiError> {
                let Self { $($($put,)*)? $($($keep,)*)? $($($skip,)*)? $($($refuse,)*)? } = self;
                $($(
                    if $refuse.sent() {
                        return Err(unsupported(format!(
                            "{} in protobuf is not supported by netlab: send the object as \
                             application/json (with kubectl: `kubectl create … --dry-run=client \
                             -o yaml | kubectl apply -f -`)",
                            path(at, stringify!($refuse))
                        )));
                    }
                )*)?
                let mut m = Map::new();
                $($(
                    if let Some(v) = Field::json($put, at, stringify!($put))? {
                        m.insert(json_name(stringify!($put)), v);
                    }
                )*)?
                $($(
                    if let Some(v) = Field::json(Keep($keep), at, stringify!($keep))? {
                        m.insert(json_name(stringify!($keep)), v);
                    }
                )*)?
                Ok(m)
            }
        }
    };
}

// apimachinery
object!(meta::ObjectMeta {
    put: name, generate_name, namespace, self_link, uid, resource_version, generation,
        labels, annotations, owner_references, finalizers;
    keep: deletion_grace_period_seconds;
    skip: creation_timestamp, deletion_timestamp, managed_fields;
});
object!(meta::OwnerReference {
    put: api_version, kind, name, uid;
    keep: controller, block_owner_deletion;
});
object!(meta::LabelSelector { put: match_labels, match_expressions; });
object!(meta::LabelSelectorRequirement { put: key, operator, values; });

// core/v1
object!(core::Namespace { put: metadata, spec; skip: status; });
object!(core::NamespaceSpec { put: finalizers; });
object!(core::Secret { put: metadata, data, string_data, r#type; keep: immutable; });
object!(core::ConfigMap { put: metadata, data, binary_data; keep: immutable; });
object!(core::ServiceAccount {
    put: metadata, secrets, image_pull_secrets;
    keep: automount_service_account_token;
});
object!(core::LocalObjectReference { put: name; });
object!(core::ObjectReference {
    put: kind, namespace, name, uid, api_version, resource_version, field_path;
});
object!(core::Service { put: metadata, spec; skip: status; });
object!(core::ServiceSpec {
    put: ports, selector, cluster_ip, cluster_ips, r#type, external_ips, session_affinity,
        load_balancer_ip, load_balancer_source_ranges, external_name, external_traffic_policy,
        health_check_node_port, publish_not_ready_addresses, session_affinity_config,
        ip_families, ip_family_policy, load_balancer_class, internal_traffic_policy,
        traffic_distribution;
    keep: allocate_load_balancer_node_ports;
});
object!(core::ServicePort { put: name, protocol, app_protocol, port, target_port, node_port; });
object!(core::SessionAffinityConfig { put: client_ip; });
object!(core::ClientIpConfig { keep: timeout_seconds; });
object!(core::Pod { put: metadata, spec; skip: status; });
object!(core::PodTemplateSpec { put: metadata, spec; });
object!(core::PodSpec {
    put: init_containers, containers, restart_policy, dns_policy, node_selector,
        service_account_name, service_account, node_name, host_network, image_pull_secrets,
        hostname, subdomain, scheduler_name, tolerations, priority_class_name,
        runtime_class_name, preemption_policy;
    keep: termination_grace_period_seconds, active_deadline_seconds,
        automount_service_account_token, priority, enable_service_links, set_hostname_as_fqdn;
    refuse: volumes, ephemeral_containers, host_pid, host_ipc, share_process_namespace,
        security_context, affinity, host_aliases, dns_config, readiness_gates, overhead,
        topology_spread_constraints, os, host_users, scheduling_gates, resource_claims, resources,
        hostname_override, workload_ref;
});
object!(core::Container {
    put: name, image, command, args, working_dir, ports, env, resources, restart_policy,
        termination_message_path, termination_message_policy, image_pull_policy, stdin,
        stdin_once, tty;
    refuse: env_from, resize_policy, restart_policy_rules, volume_mounts, volume_devices,
        liveness_probe, readiness_probe, startup_probe, lifecycle, security_context;
});
object!(core::ContainerPort { put: name, host_port, container_port, protocol, host_ip; });
object!(core::EnvVar { put: name, value; refuse: value_from; });
object!(core::ResourceRequirements { put: limits, requests; refuse: claims; });
object!(core::Toleration { put: key, operator, value, effect; keep: toleration_seconds; });

// apps/v1
object!(apps::Deployment { put: metadata, spec; skip: status; });
object!(apps::DeploymentSpec {
    put: selector, template, strategy, min_ready_seconds, paused;
    keep: replicas, revision_history_limit, progress_deadline_seconds;
});
object!(apps::DeploymentStrategy { put: r#type, rolling_update; });
object!(apps::RollingUpdateDeployment { keep: max_unavailable, max_surge; });

// networking.k8s.io/v1 (`port` and `endPort` are Go pointers: a 0 is
// kept, for validation to refuse)
object!(networking::NetworkPolicy { put: metadata, spec; });
object!(networking::NetworkPolicySpec { put: pod_selector, ingress, egress, policy_types; });
object!(networking::NetworkPolicyIngressRule { put: ports, from; });
object!(networking::NetworkPolicyEgressRule { put: ports, to; });
object!(networking::NetworkPolicyPort { put: protocol; keep: port, end_port; });
object!(networking::NetworkPolicyPeer { put: pod_selector, namespace_selector, ip_block; });
object!(networking::IpBlock { put: cidr, except; });

// rbac.authorization.k8s.io/v1
object!(rbac::Role { put: metadata, rules; });
object!(rbac::ClusterRole { put: metadata, rules, aggregation_rule; });
object!(rbac::AggregationRule { put: cluster_role_selectors; });
object!(rbac::PolicyRule { put: verbs, api_groups, resources, resource_names, non_resource_ur_ls; });
object!(rbac::RoleBinding { put: metadata, subjects, role_ref; });
object!(rbac::ClusterRoleBinding { put: metadata, subjects, role_ref; });
object!(rbac::Subject { put: kind, api_group, name, namespace; });
object!(rbac::RoleRef { put: api_group, kind, name; });

// authentication.k8s.io/v1, authorization.k8s.io/v1
object!(authn::TokenRequest { put: metadata, spec; skip: status; });
object!(authn::TokenRequestSpec { put: audiences, bound_object_ref; keep: expiration_seconds; });
object!(authn::BoundObjectReference { put: kind, api_version, name, u_id; });
object!(authn::TokenReview { put: metadata, spec; skip: status; });
object!(authn::TokenReviewSpec { put: token, audiences; });
object!(authn::SelfSubjectReview { put: metadata; skip: status; });
object!(authz::SubjectAccessReview { put: metadata, spec; skip: status; });
object!(authz::SubjectAccessReviewSpec {
    put: resource_attributes, non_resource_attributes, user, groups, uid;
    refuse: extra;
});
object!(authz::LocalSubjectAccessReview { put: metadata, spec; skip: status; });
object!(authz::SelfSubjectAccessReview { put: metadata, spec; skip: status; });
object!(authz::SelfSubjectAccessReviewSpec { put: resource_attributes, non_resource_attributes; });
object!(authz::ResourceAttributes {
    put: namespace, verb, group, version, resource, subresource, name;
    refuse: field_selector, label_selector;
});
object!(authz::NonResourceAttributes { put: path, verb; });
object!(authz::SelfSubjectRulesReview { put: metadata, spec; skip: status; });
object!(authz::SelfSubjectRulesReviewSpec { put: namespace; });

fn read<M: Message + Default + Object>(raw: &[u8], kind: &str) -> Result<Value, ApiError> {
    M::decode(raw)
        .map_err(|e| ApiError::bad_request(format!("the {kind} cannot be read: {e}")))?
        .object("")
        .map(Value::Object)
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
    let (raw, k) = (raw.as_slice(), kind.as_str());
    let mut v = match (api_version.as_str(), k) {
        ("v1", "Namespace") => read::<core::Namespace>(raw, k),
        ("v1", "Pod") => read::<core::Pod>(raw, k),
        ("v1", "Service") => read::<core::Service>(raw, k),
        ("v1", "Secret") => read::<core::Secret>(raw, k),
        ("v1", "ConfigMap") => read::<core::ConfigMap>(raw, k),
        ("v1", "ServiceAccount") => read::<core::ServiceAccount>(raw, k),
        ("apps/v1", "Deployment") => read::<apps::Deployment>(raw, k),
        ("networking.k8s.io/v1", "NetworkPolicy") => read::<networking::NetworkPolicy>(raw, k),
        ("rbac.authorization.k8s.io/v1", "Role") => read::<rbac::Role>(raw, k),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => read::<rbac::ClusterRole>(raw, k),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => read::<rbac::RoleBinding>(raw, k),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            read::<rbac::ClusterRoleBinding>(raw, k)
        }
        ("authentication.k8s.io/v1", "TokenRequest") => read::<authn::TokenRequest>(raw, k),
        ("authentication.k8s.io/v1", "TokenReview") => read::<authn::TokenReview>(raw, k),
        ("authentication.k8s.io/v1", "SelfSubjectReview") => {
            read::<authn::SelfSubjectReview>(raw, k)
        }
        ("authorization.k8s.io/v1", "SubjectAccessReview") => {
            read::<authz::SubjectAccessReview>(raw, k)
        }
        ("authorization.k8s.io/v1", "LocalSubjectAccessReview") => {
            read::<authz::LocalSubjectAccessReview>(raw, k)
        }
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => {
            read::<authz::SelfSubjectAccessReview>(raw, k)
        }
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => {
            read::<authz::SelfSubjectRulesReview>(raw, k)
        }
        _ => Err(unsupported(format!(
            "{api_version} {kind} in protobuf is not supported by netlab: send it as application/json"
        ))),
    }?;
    v["apiVersion"] = api_version.into();
    v["kind"] = kind.into();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let api_version = match kind {
            "Deployment" => "apps/v1",
            "NetworkPolicy" => "networking.k8s.io/v1",
            _ => "v1",
        };
        let u = k8s_pb::apimachinery::pkg::runtime::Unknown {
            type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
                api_version: Some(api_version.into()),
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
            metadata: Some(meta::ObjectMeta {
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
            metadata: Some(meta::ObjectMeta {
                name: Some("cm".into()),
                ..Default::default()
            }),
            data: [("default.conf".to_string(), "server {}".to_string())].into(),
            ..Default::default()
        };
        let v = decode(&envelope("ConfigMap", c.encode_to_vec())).unwrap();
        assert_eq!(v["data"]["default.conf"], "server {}");
        assert_eq!(
            decode(&envelope("PersistentVolume", vec![]))
                .unwrap_err()
                .code,
            415
        );
        assert_eq!(decode(b"junk").unwrap_err().code, 400);
    }

    #[test]
    fn a_network_policy_keeps_its_empty_selector_and_named_port() {
        use k8s_pb::apimachinery::pkg::util::intstr::IntOrString as Pb;
        let np = networking::NetworkPolicy {
            metadata: Some(meta::ObjectMeta {
                name: Some("np".into()),
                ..Default::default()
            }),
            spec: Some(networking::NetworkPolicySpec {
                pod_selector: Some(meta::LabelSelector::default()),
                ingress: vec![networking::NetworkPolicyIngressRule {
                    ports: vec![networking::NetworkPolicyPort {
                        protocol: Some("UDP".into()),
                        port: Some(Pb {
                            r#type: Some(1),
                            int_val: Some(0),
                            str_val: Some("dns".into()),
                        }),
                        end_port: None,
                    }],
                    from: vec![networking::NetworkPolicyPeer {
                        ip_block: Some(networking::IpBlock {
                            cidr: Some("10.0.0.0/8".into()),
                            except: vec!["10.1.0.0/16".into()],
                        }),
                        ..Default::default()
                    }],
                }],
                egress: vec![],
                policy_types: vec!["Ingress".into()],
            }),
        };
        let v = decode(&envelope("NetworkPolicy", np.encode_to_vec())).unwrap();
        assert_eq!(v["apiVersion"], "networking.k8s.io/v1");
        assert_eq!(v["spec"]["podSelector"], serde_json::json!({}), "{v}");
        assert_eq!(
            v["spec"]["ingress"][0],
            serde_json::json!({"ports": [{"protocol": "UDP", "port": "dns"}],
                               "from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]})
        );
        assert!(v["spec"].get("egress").is_none());
    }

    /// What Go's marshalling sends: every non-pointer field, zero or not.
    fn go_container(name: &str) -> core::Container {
        core::Container {
            name: Some(name.into()),
            image: Some("nginx".into()),
            working_dir: Some(String::new()),
            resources: Some(core::ResourceRequirements::default()),
            termination_message_path: Some(String::new()),
            image_pull_policy: Some(String::new()),
            stdin: Some(false),
            ports: vec![core::ContainerPort {
                container_port: Some(80),
                host_port: Some(0),
                protocol: Some(String::new()),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn deployments_namespaces_and_services_as_kubectl_create_sends_them() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let d = apps::Deployment {
            metadata: Some(meta::ObjectMeta {
                name: Some("web".into()),
                labels: labels.clone(),
                creation_timestamp: Some(Default::default()),
                generation: Some(0),
                ..Default::default()
            }),
            spec: Some(apps::DeploymentSpec {
                replicas: Some(0),
                selector: Some(meta::LabelSelector {
                    match_labels: labels.clone(),
                    ..Default::default()
                }),
                template: Some(core::PodTemplateSpec {
                    metadata: Some(meta::ObjectMeta {
                        labels: labels.clone(),
                        ..Default::default()
                    }),
                    spec: Some(core::PodSpec {
                        containers: vec![go_container("nginx")],
                        host_pid: Some(false),
                        ..Default::default()
                    }),
                }),
                strategy: Some(apps::DeploymentStrategy {
                    rolling_update: Some(apps::RollingUpdateDeployment {
                        max_surge: Some(IntOrString {
                            r#type: Some(1),
                            str_val: Some("25%".into()),
                            int_val: Some(0),
                        }),
                        max_unavailable: Some(IntOrString {
                            r#type: Some(0),
                            int_val: Some(0),
                            str_val: Some(String::new()),
                        }),
                    }),
                    ..Default::default()
                }),
                min_ready_seconds: Some(0),
                paused: Some(false),
                ..Default::default()
            }),
            status: Some(Default::default()),
        };
        let v = decode(&envelope("Deployment", d.encode_to_vec())).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{
                            "name": "nginx", "image": "nginx", "resources": {},
                            "ports": [{"containerPort": 80}],
                        }]},
                    },
                    "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
                },
            })
        );

        // A field netlab does not read is refused by its path, not dropped.
        let mut d = d;
        let pod = d.spec.as_mut().unwrap().template.as_mut().unwrap();
        let c = &mut pod.spec.as_mut().unwrap().containers[0];
        c.volume_mounts = vec![core::VolumeMount::default()];
        let e = decode(&envelope("Deployment", d.encode_to_vec())).unwrap_err();
        assert_eq!(e.code, 415);
        assert!(
            e.message
                .starts_with("spec.template.spec.containers[0].volumeMounts in protobuf"),
            "{}",
            e.message
        );

        let s = core::Service {
            metadata: Some(meta::ObjectMeta {
                name: Some("web2".into()),
                ..Default::default()
            }),
            spec: Some(core::ServiceSpec {
                ports: vec![core::ServicePort {
                    name: Some("80-80".into()),
                    protocol: Some("TCP".into()),
                    port: Some(80),
                    target_port: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(8080),
                        str_val: Some(String::new()),
                    }),
                    node_port: Some(0),
                    ..Default::default()
                }],
                cluster_ip: Some(String::new()),
                r#type: Some("ClusterIP".into()),
                publish_not_ready_addresses: Some(false),
                ..Default::default()
            }),
            status: None,
        };
        let v = decode(&envelope("Service", s.encode_to_vec())).unwrap();
        assert_eq!(
            v["spec"],
            serde_json::json!({
                "type": "ClusterIP",
                "ports": [{"name": "80-80", "protocol": "TCP", "port": 80, "targetPort": 8080}],
            })
        );

        let n = core::Namespace {
            metadata: Some(meta::ObjectMeta {
                name: Some("foo".into()),
                ..Default::default()
            }),
            spec: Some(Default::default()),
            status: Some(Default::default()),
        };
        let v = decode(&envelope("Namespace", n.encode_to_vec())).unwrap();
        assert_eq!(v["metadata"], serde_json::json!({"name": "foo"}));
    }
}
