//! The lab's object store: Kubernetes objects (Nodes, Deployments, Pods) plus
//! what netlab needs to find its kernel objects again. Pure data; `persist`
//! and `load` write and read it atomically.

use super::collection::Collection;
use super::{ipam, topology};
use crate::lab::{LabConfig, LabSpec};
use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus,
    NodeSystemInfo, Pod, PodCondition, PodIP, PodStatus, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterState {
    pub config: LabConfig,
    pub created: DateTime<Utc>,
    pub nodes: Collection<Node>,
    pub deployments: Collection<Deployment>,
    /// The Deployments' ReplicaSets (`deployments.rs`), which own the pods
    /// (`replicasets.rs`).
    #[serde(default)]
    pub replica_sets: Collection<ReplicaSet>,
    pub pods: Collection<Pod>,
    #[serde(default)]
    pub services: Collection<Service>,
    #[serde(default)]
    pub endpoints: Collection<Endpoints>,
    /// discovery.k8s.io/v1 EndpointSlices (`endpointslices.rs`): kept so
    /// that their generated names survive restarts of the lab's process.
    #[serde(default)]
    pub endpoint_slices: Collection<EndpointSlice>,
    #[serde(default)]
    pub events: Collection<Event>,
    /// Secrets: the state file is 0600 because of them.
    #[serde(default)]
    pub secrets: Collection<Secret>,
    #[serde(default)]
    pub config_maps: Collection<ConfigMap>,
    /// Who pods are to the API (`access.rs` makes each namespace's
    /// `default`), and what they may do: RBAC's four kinds.
    #[serde(default)]
    pub service_accounts: Collection<ServiceAccount>,
    #[serde(default)]
    pub roles: Collection<Role>,
    #[serde(default)]
    pub role_bindings: Collection<RoleBinding>,
    #[serde(default)]
    pub cluster_roles: Collection<ClusterRole>,
    #[serde(default)]
    pub cluster_role_bindings: Collection<ClusterRoleBinding>,
    /// networking.k8s.io/v1 NetworkPolicies, as stored
    /// (`network_policies.rs` defaults and validates them).
    #[serde(default)]
    pub network_policies: Collection<NetworkPolicy>,
    /// Namespaces made or changed as objects (`namespaces.rs`); the others
    /// a lab has are implied.
    #[serde(default)]
    pub namespaces: Collection<Namespace>,
    /// What the last endpoints refresh computed from (`services.rs`).
    #[serde(skip)]
    pub endpoints_memo: super::services::Memo,
}

/// Facts about the host that go into Node objects (`get nodes -o wide`).
#[derive(Debug, Clone, Default)]
pub struct HostInfo {
    pub os_image: String,
    pub kernel_version: String,
    pub container_runtime: String,
    pub architecture: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Ipam(#[from] ipam::Exhausted),
    #[error("{0}")]
    Object(String),
    /// A pod refused by admission (kube-apiserver's 403).
    #[error("{0}")]
    Forbidden(String),
    #[error("{at}: {source}")]
    Service {
        at: String,
        #[source]
        source: super::services::ServiceError,
    },
}

/// A Kubernetes timestamp: whole seconds, as metav1.Time is on the wire, so
/// an object in memory equals the same object read back from the store.
pub fn time(t: DateTime<Utc>) -> Time {
    Time(DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t))
}

impl ClusterState {
    /// The initial state of a lab: nodes, the lab's Deployments and Pods, and
    /// the pods the Deployments ask for, scheduled and given addresses.
    pub fn plan(
        spec: &LabSpec,
        host: &HostInfo,
        now: DateTime<Utc>,
        rng: &mut impl rand::Rng,
    ) -> Result<ClusterState, StateError> {
        let config = spec.config.clone();
        let nodes = topology::nodes(&config)
            .into_iter()
            .map(|n| node_object(&config, &n, host, now))
            .collect();
        let mut state = ClusterState {
            config,
            created: now,
            nodes,
            ..ClusterState::empty()
        };
        for n in &spec.namespaces {
            super::namespaces::apply_namespace(&mut state, n.object.clone(), false, now, rng)
                .map_err(|e| StateError::Object(format!("{}: {e}", n.at)))?;
        }
        // ServiceAccounts and RBAC first: a pod's admission reads its account.
        for a in &spec.access {
            super::objects::apply_access(
                &mut state,
                a.object.clone(),
                super::objects::Mode::Create,
                now,
                rng,
            )
            .map_err(|e| StateError::Object(format!("{}: {e}", a.at)))?;
        }
        for n in &spec.network_policies {
            super::objects::apply_network_policy(
                &mut state,
                n.object.clone(),
                super::objects::Mode::Create,
                now,
                rng,
            )
            .map_err(|e| StateError::Object(format!("{}: {e}", n.at)))?;
        }
        for p in &spec.pods {
            let mut pod = p.object.clone();
            pod.metadata.creation_timestamp = Some(time(now));
            pod.metadata.uid = Some(uid(rng));
            state.place(pod).map_err(|e| match e {
                StateError::Forbidden(m) => StateError::Object(format!(
                    "{}: {m} (add the ServiceAccount to the lab's files)",
                    p.at
                )),
                e => e,
            })?;
        }
        for d in &spec.deployments {
            let mut dep = d.object.clone();
            dep.metadata.creation_timestamp = Some(time(now));
            dep.metadata.uid = Some(uid(rng));
            dep.metadata.generation = Some(1);
            state.deployments.push(dep);
        }
        // Their ReplicaSets and pods, as the controllers make them.
        state.reconcile_workloads(now, rng)?;
        state
            .upsert_service(
                super::services::kubernetes_service(state.config.service_cidr),
                now,
                rng,
            )
            .expect("the kubernetes service is valid");
        if state.config.dns.enabled {
            // After the lab's own pods, so that their placement does not
            // depend on whether the lab has a cluster DNS.
            let mut dep = super::dns::deployment();
            dep.metadata.creation_timestamp = Some(time(now));
            dep.metadata.uid = Some(uid(rng));
            dep.metadata.generation = Some(1);
            state.deployments.push(dep);
            state.reconcile_workloads(now, rng)?;
            state
                .upsert_service(
                    super::dns::service(super::services::dns_ip(state.config.service_cidr)),
                    now,
                    rng,
                )
                .expect("the kube-dns service is valid");
        }
        for s in &spec.secrets {
            let mut secret = s.object.clone();
            secret.metadata.creation_timestamp = Some(time(now));
            secret.metadata.uid = Some(uid(rng));
            state.secrets.push(secret);
        }
        for c in &spec.config_maps {
            let mut cm = c.object.clone();
            cm.metadata.creation_timestamp = Some(time(now));
            cm.metadata.uid = Some(uid(rng));
            state.config_maps.push(cm);
        }
        let mut batch = state.service_batch();
        for s in &spec.services {
            batch
                .upsert(s.object.clone(), now, rng)
                .map_err(|source| StateError::Service {
                    at: s.at.to_string(),
                    source,
                })?;
        }
        drop(batch);
        state.store_named(now, rng);
        state.refresh_deployment_status();
        state.refresh_endpoints();
        Ok(state)
    }

    /// Schedules a pod (see [`super::scheduler`]: its own `spec.nodeName`
    /// wins, else the node with the fewest pods whose hostPorts are free)
    /// and gives it the lowest free address there. No node fits: the pod
    /// is kept Pending and unbound, with a `FailedScheduling` event, and
    /// [`ClusterState::schedule_pending`] tries again later.
    pub fn place(&mut self, mut pod: Pod) -> Result<(), StateError> {
        // The API server's defaulting and admission, before the scheduler
        // reads the ports. A pod naming a ServiceAccount that does not exist
        // is refused (by its generateName when it has one, as admission runs
        // before the name is made).
        let ns = namespace(&pod.metadata);
        if let Some(why) =
            super::access::missing_account(ns, pod.spec.as_ref(), &self.service_accounts)
        {
            let m = &pod.metadata;
            let shown = m.generate_name.as_deref().or(m.name.as_deref());
            return Err(StateError::Forbidden(format!(
                "pods \"{}\" is forbidden: {why}",
                shown.unwrap_or_default()
            )));
        }
        super::host_network::default_host_ports(&mut pod);
        super::access::admit_pod(&mut pod, &self.service_accounts);
        super::nodes::default_tolerations(&mut pod, self.config.timing.default_toleration_seconds);
        self.pods.push(pod);
        let i = self.pods.len() - 1;
        self.bind(i, Utc::now()).map(|_| ())
    }

    /// Tries again to place the pods that no node could take. Returns
    /// whether one was bound.
    pub fn schedule_pending(&mut self) -> Result<bool, StateError> {
        let mut bound = false;
        let now = Utc::now();
        for i in 0..self.pods.len() {
            let p = &self.pods[i];
            if pod_node(p).is_none() && p.metadata.deletion_timestamp.is_none() {
                bound |= self.bind(i, now)?;
            }
        }
        Ok(bound)
    }

    /// Schedules `self.pods[i]`; whether it got a node.
    fn bind(&mut self, i: usize, now: DateTime<Utc>) -> Result<bool, StateError> {
        let picked = {
            let nodes: Vec<&Node> = self.nodes.iter().collect();
            super::scheduler::pick(&self.pods[i], &nodes, &self.pods)
        };
        let pod = &mut self.pods[i];
        let (ns, name) = (
            namespace(&pod.metadata).to_string(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        let who = super::events::Involved {
            kind: "Pod",
            namespace: &ns,
            name: &name,
        };
        let node_name = match picked {
            Ok(n) => n,
            Err(e) => {
                let status = pod.status.get_or_insert_with(PodStatus::default);
                status.phase = Some("Pending".into());
                status.conditions = Some(vec![PodCondition {
                    type_: "PodScheduled".into(),
                    status: "False".into(),
                    reason: Some("Unschedulable".into()),
                    message: Some(e.message.clone()),
                    last_transition_time: Some(time(now)),
                    ..Default::default()
                }]);
                self.record(
                    who,
                    "Warning",
                    "FailedScheduling",
                    "default-scheduler",
                    e.message,
                    now,
                );
                return Ok(false);
            }
        };
        let node = topology::nodes(&self.config)
            .into_iter()
            .find(|n| n.name == node_name)
            .expect("validated node name");
        // A hostNetwork pod is addressed as its node: IPAM is not asked (and
        // its address, outside the pod range, is never in `used`).
        let ip = if super::host_network::is_host_network(&self.pods[i]) {
            node.lan.addr()
        } else {
            let used: HashSet<Ipv4Addr> = self
                .pods
                .iter()
                .filter(|p| pod_node(p) == Some(node_name.as_str()))
                .filter(|p| !super::host_network::is_host_network(p))
                .filter_map(pod_ip)
                .collect();
            ipam::allocate(&node_name, node.pod_subnet, &used)?
        };
        let pod = &mut self.pods[i];
        pod.spec.get_or_insert_with(Default::default).node_name = Some(node_name.clone());
        let status = pod.status.get_or_insert_with(PodStatus::default);
        status.phase = Some("Pending".into());
        status.conditions = None;
        status.host_ip = Some(node.lan.addr().to_string());
        status.pod_ip = Some(ip.to_string());
        status.pod_ips = Some(vec![PodIP { ip: ip.to_string() }]);
        self.record(
            who,
            "Normal",
            "Scheduled",
            "default-scheduler",
            format!("Successfully assigned {ns}/{name} to {node_name}"),
            now,
        );
        Ok(true)
    }

    /// The workload controllers' step: Deployments → ReplicaSets
    /// (`deployments.rs`), ReplicaSets → Pods (`replicasets.rs`), then the
    /// garbage collector (`gc.rs`) and the statuses, repeated while one of
    /// them acts. A rollout stops at pods that are not available yet; the
    /// lab's process calls this again when they are. Returns whether
    /// anything changed.
    pub fn reconcile_workloads(
        &mut self,
        now: DateTime<Utc>,
        rng: &mut impl rand::Rng,
    ) -> Result<bool, StateError> {
        let mut changed = false;
        // Each round either acts or ends the loop; a handful suffice (a
        // deleted owner, its ReplicaSets, their pods, a recreation).
        for _ in 0..8 {
            let mut acted = self.refresh_replica_set_status();
            acted |= self.sync_deployments(now, rng);
            acted |= self.sync_replica_sets(now, rng)?;
            acted |= self.collect_garbage(now);
            acted |= self.monitor_nodes(now);
            acted |= self.evict_tainted(now);
            acted |= self.sweep_namespaces();
            acted |= self.refresh_replica_set_status();
            acted |= self.refresh_deployments_status(now);
            changed |= acted;
            if !acted {
                break;
            }
        }
        Ok(changed)
    }

    /// The ReplicaSets' and Deployments' statuses from their pods (after a
    /// pod became ready or died). Returns whether one changed.
    pub fn refresh_deployment_status(&mut self) -> bool {
        let rs = self.refresh_replica_set_status();
        self.refresh_deployments_status(Utc::now()) || rs
    }

    /// The namespaces of a lab: Kubernetes' four, and the stored ones.
    pub fn namespace_names(&self) -> Vec<String> {
        let mut names: Vec<String> = super::namespaces::BUILT_IN.map(String::from).to_vec();
        for n in self
            .namespaces
            .iter()
            .filter_map(|n| n.metadata.name.as_deref())
        {
            if !names.iter().any(|x| x == n) {
                names.push(n.to_string());
            }
        }
        names.sort();
        names
    }

    /// The metadata of every object a user puts in a namespace (what makes
    /// a namespace exist, and what deleting one waits for).
    pub fn namespaced_metas(&self) -> impl Iterator<Item = &ObjectMeta> {
        self.pods
            .iter()
            .map(|o| &o.metadata)
            .chain(self.services.iter().map(|o| &o.metadata))
            .chain(self.deployments.iter().map(|o| &o.metadata))
            .chain(self.replica_sets.iter().map(|o| &o.metadata))
            .chain(self.secrets.iter().map(|o| &o.metadata))
            .chain(self.config_maps.iter().map(|o| &o.metadata))
            .chain(self.service_accounts.iter().map(|o| &o.metadata))
            .chain(self.roles.iter().map(|o| &o.metadata))
            .chain(self.role_bindings.iter().map(|o| &o.metadata))
            .chain(self.network_policies.iter().map(|o| &o.metadata))
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<&Pod> {
        self.pods.iter().find(|p| {
            p.metadata.name.as_deref() == Some(name)
                && p.metadata.namespace.as_deref().unwrap_or("default") == namespace
        })
    }

    /// A lab with nothing in it (what a store holds before its first
    /// commit).
    pub fn empty() -> ClusterState {
        use crate::lab::config as c;
        ClusterState {
            config: LabConfig {
                name: String::new(),
                nodes: Vec::new(),
                pod_cidr: c::DEFAULT_POD_CIDR.parse().expect("valid"),
                pod_cidr_mask_size: c::DEFAULT_POD_CIDR_MASK_SIZE,
                service_cidr: c::DEFAULT_SERVICE_CIDR.parse().expect("valid"),
                node_cidr: c::DEFAULT_NODE_CIDR.parse().expect("valid"),
                registry_mirrors: Default::default(),
                dns: Default::default(),
                public: Default::default(),
                disk_size: None,
                timing: Default::default(),
            },
            created: DateTime::<Utc>::UNIX_EPOCH,
            nodes: Collection::new(),
            deployments: Collection::new(),
            replica_sets: Collection::new(),
            pods: Collection::new(),
            services: Collection::new(),
            endpoints: Collection::new(),
            endpoint_slices: Collection::new(),
            events: Collection::new(),
            secrets: Collection::new(),
            config_maps: Collection::new(),
            service_accounts: Collection::new(),
            roles: Collection::new(),
            role_bindings: Collection::new(),
            cluster_roles: Collection::new(),
            cluster_role_bindings: Collection::new(),
            network_policies: Collection::new(),
            namespaces: Collection::new(),
            endpoints_memo: Default::default(),
        }
    }
}

/// The node a pod is bound to (None: no node could take it yet).
pub fn pod_node(p: &Pod) -> Option<&str> {
    p.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

pub fn pod_ip(p: &Pod) -> Option<Ipv4Addr> {
    p.status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|ip| ip.parse().ok())
}

pub fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn namespace(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

/// The Deployment that owns a pod (through its ReplicaSet `<deploy>-<hash>`).
pub fn deployment_of(p: &Pod) -> Option<&str> {
    let labels = p.metadata.labels.as_ref()?;
    let hash = labels.get("pod-template-hash")?;
    let rs = p
        .metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.kind == "ReplicaSet")?;
    rs.name.strip_suffix(&format!("-{hash}"))
}

pub fn uid(rng: &mut impl rand::Rng) -> String {
    let b: [u8; 16] = rng.random();
    let h = hex::encode(b);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn node_object(
    config: &LabConfig,
    n: &topology::NodeAddresses,
    host: &HostInfo,
    now: DateTime<Utc>,
) -> Node {
    let labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", n.name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", host.architecture.as_str()),
        ("netlab.dev/lab", config.name.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Node {
        metadata: ObjectMeta {
            name: Some(n.name.clone()),
            labels: Some(labels),
            creation_timestamp: Some(time(now)),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(n.pod_subnet.to_string()),
            pod_cidrs: Some(vec![n.pod_subnet.to_string()]),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: n.lan.addr().to_string(),
                },
                NodeAddress {
                    type_: "ExternalIP".into(),
                    address: n.external.addr().to_string(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: n.name.clone(),
                },
            ]),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: Some("NetlabNodeReady".into()),
                message: Some("node network namespace is up".into()),
                last_transition_time: Some(time(now)),
                last_heartbeat_time: Some(time(now)),
            }]),
            node_info: Some(NodeSystemInfo {
                architecture: host.architecture.clone(),
                container_runtime_version: host.container_runtime.clone(),
                kernel_version: host.kernel_version.clone(),
                kubelet_version: format!("v{}-netlab", env!("CARGO_PKG_VERSION")),
                kube_proxy_version: format!("v{}-netlab", env!("CARGO_PKG_VERSION")),
                operating_system: "linux".into(),
                os_image: host.os_image.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab;
    use rand::SeedableRng;
    use std::path::Path;

    const LAB: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: my-nginx\nspec:\n  selector:\n    matchLabels:\n      run: my-nginx\n  replicas: 3\n  template:\n    metadata:\n      labels:\n        run: my-nginx\n    spec:\n      containers:\n      - name: my-nginx\n        image: nginx\n        ports:\n        - containerPort: 80\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: pinned\nspec:\n  nodeName: node-2\n  containers:\n  - name: c\n    image: nginx\n";

    fn plan() -> ClusterState {
        let spec = lab::load_str(Path::new("t.yaml"), LAB, &Default::default()).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        ClusterState::plan(&spec, &HostInfo::default(), Utc::now(), &mut rng).unwrap()
    }

    #[test]
    fn deployment_pods_are_named_spread_and_addressed() {
        let mut s = plan();
        // The cluster DNS pod comes last, in kube-system.
        let dns = s.pods.pop().unwrap();
        assert!(crate::cluster::dns::is_builtin(&dns));
        assert_eq!(namespace(&dns.metadata), "kube-system");
        assert_eq!(s.pods.len(), 4);
        let deps: Vec<&Pod> = s
            .pods
            .iter()
            .filter(|p| deployment_of(p) == Some("my-nginx"))
            .collect();
        assert_eq!(deps.len(), 3);
        for p in &deps {
            let name = p.metadata.name.as_deref().unwrap();
            let parts: Vec<&str> = name.rsplitn(3, '-').collect();
            assert_eq!(parts[2], "my-nginx", "{name}");
            assert_eq!(parts[0].len(), 5, "{name}");
            assert_eq!(
                p.metadata.labels.as_ref().unwrap()["pod-template-hash"],
                parts[1]
            );
        }
        // pinned pod on node-2 first, then the deployment fills node-1 twice and node-2 once
        let on = |n: &str| s.pods.iter().filter(|p| pod_node(p) == Some(n)).count();
        assert_eq!(on("node-1"), 2);
        assert_eq!(on("node-2"), 2);
        let ips: HashSet<_> = s.pods.iter().map(|p| pod_ip(p).unwrap()).collect();
        assert_eq!(ips.len(), 4);
        let pinned = s.pod("default", "pinned").unwrap();
        assert_eq!(pod_ip(pinned).unwrap().to_string(), "10.244.2.2");
        assert_eq!(
            pinned.status.as_ref().unwrap().host_ip.as_deref(),
            Some("172.18.0.3")
        );
    }

    #[test]
    fn host_network_pods_take_the_node_address_and_keep_their_ports_apart() {
        // Three replicas listening on :80 on a 2-node lab, a pinned
        // hostNetwork pod on node-1, and a normal pod.
        let lab = "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  dns:\n    enabled: false\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: pinned\nspec:\n  hostNetwork: true\n  nodeName: node-1\n  containers:\n  - name: c\n    image: nginx\n    ports: [{containerPort: 9000}]\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: normal\nspec:\n  nodeName: node-1\n  containers:\n  - name: c\n    image: nginx\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: hn\nspec:\n  selector:\n    matchLabels: {run: hn}\n  replicas: 3\n  template:\n    metadata:\n      labels: {run: hn}\n    spec:\n      hostNetwork: true\n      containers:\n      - name: c\n        image: nginx\n        ports: [{containerPort: 80}]\n";
        let spec = lab::load_str(Path::new("t.yaml"), lab, &Default::default()).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let s = ClusterState::plan(&spec, &HostInfo::default(), Utc::now(), &mut rng).unwrap();
        let status = |p: &Pod| {
            let st = p.status.as_ref().unwrap();
            (
                st.pod_ip.clone(),
                st.host_ip.clone(),
                st.pod_ips.as_ref().map(|ips| ips[0].ip.clone()),
            )
        };
        let node1 = Some("172.18.0.2".to_string());
        let pinned = s.pod("default", "pinned").unwrap();
        assert_eq!(
            status(pinned),
            (node1.clone(), node1.clone(), node1.clone())
        );
        // Defaulted as the API server does: the scheduler sees the port.
        let hp = &pinned.spec.as_ref().unwrap().containers[0]
            .ports
            .as_ref()
            .unwrap()[0];
        assert_eq!(hp.host_port, Some(9000));
        // IPAM is not asked: the normal pod still gets the node's first address.
        assert_eq!(
            pod_ip(s.pod("default", "normal").unwrap())
                .unwrap()
                .to_string(),
            "10.244.1.2"
        );
        // Port 80 once per node: two replicas placed, on different nodes,
        // each with its node's address; the third waits.
        let hn: Vec<&Pod> = s
            .pods
            .iter()
            .filter(|p| deployment_of(p) == Some("hn"))
            .collect();
        assert_eq!(hn.len(), 3);
        let mut placed: Vec<(Option<&str>, Option<String>)> = hn
            .iter()
            .filter(|p| pod_node(p).is_some())
            .map(|p| (pod_node(p), status(p).0))
            .collect();
        placed.sort();
        assert_eq!(
            placed,
            [
                (Some("node-1"), node1),
                (Some("node-2"), Some("172.18.0.3".to_string()))
            ]
        );
        let waiting: Vec<&&Pod> = hn.iter().filter(|p| pod_node(p).is_none()).collect();
        assert_eq!(waiting.len(), 1);
        assert!(pod_ip(waiting[0]).is_none());
    }

    #[test]
    fn many_replicas_get_distinct_names() {
        // 1 000 replicas: random 5-character suffixes collide now and then
        // (the pod network then refused the plan: duplicate netns).
        let lab = "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  podCIDRMaskSize: 22\n  dns:\n    enabled: false\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels:\n      run: web\n  replicas: 1000\n  template:\n    metadata:\n      labels:\n        run: web\n    spec:\n      containers:\n      - name: web\n        image: nginx\n";
        let spec = lab::load_str(Path::new("t.yaml"), lab, &Default::default()).unwrap();
        for seed in 0..4 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let s = ClusterState::plan(&spec, &HostInfo::default(), Utc::now(), &mut rng).unwrap();
            let names: HashSet<_> = s.pods.iter().map(|p| p.metadata.name.clone()).collect();
            assert_eq!(names.len(), 1000, "seed {seed}");
            assert_eq!(pod_ip(&s.pods[999]).unwrap().to_string(), "10.244.9.245");
        }
    }
}
