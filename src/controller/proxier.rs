//! kube-proxy's job: turn the lab's Services and Endpoints into the `proxy`
//! model of each node and sync every node's `ip netlab` table.

use super::ControllerError;
use crate::cluster::endpointslices::SERVICE_NAME;
use crate::cluster::services::{cluster_ip, ref_key, service_type};
use crate::cluster::Collection;
use crate::cluster::{state, topology, ClusterState};
use crate::paths;
use crate::proxy::{self, model};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// The proxy model of one node (pure).
pub fn node_model(st: &ClusterState, node: &str) -> (model::Node, Vec<model::Service>) {
    (node_only(st, node), services_model(st))
}

/// The node's own part of its model: its addresses and hostPorts.
fn node_only(st: &ClusterState, node: &str) -> model::Node {
    let addrs = topology::nodes(&st.config);
    let me = addrs.iter().find(|n| n.name == node).expect("a lab node");
    model::Node {
        name: node.to_string(),
        // NodePorts answer on the LAN address and on the ExternalIP.
        node_ips: vec![me.lan.addr(), me.external.addr()],
        cluster_cidr: st.config.pod_cidr,
        service_cidr: st.config.service_cidr,
        host_ports: host_ports(st, node),
        partitioned: st
            .partitioned_from(node)
            .iter()
            .filter_map(|peer| addrs.iter().find(|n| &n.name == peer))
            .flat_map(|n| {
                [
                    ipnet::Ipv4Net::from(n.lan.addr()),
                    ipnet::Ipv4Net::from(n.external.addr()),
                    n.pod_subnet,
                ]
            })
            .collect(),
    }
}

/// The Services' part, the same on every node.
fn services_model(st: &ClusterState) -> Vec<model::Service> {
    let endpoints = st.endpoints_by_key();
    let fallback = terminating_fallback(st);
    st.services
        .iter()
        .filter_map(|s| {
            let key = ref_key(&s.metadata);
            service_model(s, endpoints.get(&key).copied(), fallback_of(&fallback, key))
        })
        .collect()
}

/// One serving, terminating endpoint of a Service port, by the port's name
/// and protocol.
type Draining = (String, String, model::Endpoint);

/// Each Service's serving, terminating endpoints, read from its
/// EndpointSlices (Endpoints list only ready pods). kube-proxy falls back
/// to these for a port that has no ready endpoint (ProxyTerminatingEndpoints,
/// GA in 1.28): a Service whose every pod is draining still answers while
/// they serve, instead of refusing at once.
type Fallback = HashMap<(String, String), Vec<Draining>>;

fn terminating_fallback(st: &ClusterState) -> Fallback {
    let mut out = Fallback::new();
    for slice in &st.endpoint_slices {
        let draining = slice.endpoints.iter().filter(|e| {
            e.conditions
                .as_ref()
                .is_some_and(|c| c.serving == Some(true) && c.terminating == Some(true))
        });
        for e in draining {
            let Some(svc) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME))
            else {
                break;
            };
            let Some(ip) = e.addresses.first().and_then(|a| a.parse::<Ipv4Addr>().ok()) else {
                continue;
            };
            let key = (state::namespace(&slice.metadata).to_string(), svc.clone());
            for p in slice.ports.iter().flatten() {
                let Some(port) = p.port else { continue };
                out.entry(key.clone()).or_default().push((
                    p.name.clone().unwrap_or_default(),
                    p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    model::Endpoint {
                        ip,
                        port: port as u16,
                        node: e.node_name.clone().unwrap_or_default(),
                    },
                ));
            }
        }
    }
    out
}

fn fallback_of<'a>(f: &'a Fallback, key: (&str, &str)) -> &'a [Draining] {
    if f.is_empty() {
        return &[];
    }
    f.get(&(key.0.to_string(), key.1.to_string()))
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The hostPorts of the pods bound to `node` that have an address and
/// are not going away (a terminating pod's ports close with its endpoints).
/// Not a hostNetwork pod's: its process listens on the node's port itself,
/// and a DNAT of the node's address to itself would only get in the way
/// (the scheduler still keeps its ports apart from other pods').
fn host_ports(st: &ClusterState, node: &str) -> Vec<model::HostPort> {
    let mut out = Vec::new();
    for p in &st.pods {
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        if state::pod_node(p) != Some(node)
            || crate::cluster::host_network::is_host_network(p)
            || p.metadata.deletion_timestamp.is_some()
            || matches!(phase, Some("Succeeded") | Some("Failed"))
        {
            continue;
        }
        let Some(pod_ip) = state::pod_ip(p) else {
            continue;
        };
        let pod = format!(
            "{}/{}",
            state::namespace(&p.metadata),
            p.metadata.name.as_deref().unwrap_or_default()
        );
        for c in p.spec.iter().flat_map(|s| s.containers.iter()) {
            for cp in c.ports.iter().flatten() {
                let Some(hp) = cp.host_port.filter(|hp| *hp > 0) else {
                    continue;
                };
                out.push(model::HostPort {
                    protocol: protocol(cp.protocol.as_deref().unwrap_or("TCP")),
                    host_port: hp as u16,
                    host_ip: cp
                        .host_ip
                        .as_deref()
                        .and_then(|ip| ip.parse().ok())
                        .filter(|ip: &Ipv4Addr| !ip.is_unspecified()),
                    pod: pod.clone(),
                    pod_ip,
                    container_port: cp.container_port as u16,
                });
            }
        }
    }
    out
}

fn protocol(p: &str) -> model::Protocol {
    match p {
        "UDP" => model::Protocol::Udp,
        "SCTP" => model::Protocol::Sctp,
        _ => model::Protocol::Tcp,
    }
}

/// The proxy model of `svc`: each port's ready endpoints, or when it has
/// none, its serving terminating ones (`draining`).
fn service_model(
    svc: &Service,
    endpoints: Option<&Endpoints>,
    draining: &[Draining],
) -> Option<model::Service> {
    let spec = svc.spec.as_ref()?;
    let ns = state::namespace(&svc.metadata);
    let name = svc.metadata.name.clone().unwrap_or_default();
    let ports = spec
        .ports
        .iter()
        .flatten()
        .map(|sp| {
            let protocol_name = sp.protocol.clone().unwrap_or_else(|| "TCP".into());
            let port_name = sp.name.clone().unwrap_or_default();
            // Ready addresses of the subsets that carry this port (by name and protocol).
            let mut eps = Vec::new();
            for subset in endpoints
                .and_then(|e| e.subsets.as_ref())
                .into_iter()
                .flatten()
            {
                let Some(ep_port) = subset.ports.iter().flatten().find(|p| {
                    p.name.clone().unwrap_or_default() == port_name
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol_name
                }) else {
                    continue;
                };
                for a in subset.addresses.iter().flatten() {
                    if let Ok(ip) = a.ip.parse::<Ipv4Addr>() {
                        eps.push(model::Endpoint {
                            ip,
                            port: ep_port.port as u16,
                            node: a.node_name.clone().unwrap_or_default(),
                        });
                    }
                }
            }
            if eps.is_empty() {
                eps = draining
                    .iter()
                    .filter(|(name, proto, _)| *name == port_name && *proto == protocol_name)
                    .map(|(_, _, e)| e.clone())
                    .collect();
            }
            eps.sort_by_key(|e| (u32::from(e.ip), e.port));
            eps.dedup();
            model::ServicePort {
                name: port_name,
                protocol: protocol(&protocol_name),
                port: sp.port as u16,
                node_port: sp.node_port.map(|n| n as u16),
                endpoints: eps,
            }
        })
        .collect();
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .unwrap_or(10800) as u32
    });
    let external_ips = crate::cluster::loadbalancer::ingress_ips(svc)
        .into_iter()
        .chain(
            spec.external_ips
                .iter()
                .flatten()
                .filter_map(|ip| ip.parse().ok()),
        )
        .collect();
    Some(model::Service {
        namespace: ns.to_string(),
        name,
        cluster_ip: cluster_ip(svc),
        external_ips,
        ports,
        affinity_timeout,
        external_traffic_local: service_type(svc) != "ClusterIP"
            && spec.external_traffic_policy.as_deref() == Some("Local"),
        source_ranges: spec
            .load_balancer_source_ranges
            .iter()
            .flatten()
            .filter_map(|r| r.parse().ok())
            .collect(),
        load_balancer_ips: crate::cluster::loadbalancer::ingress_ips(svc),
    })
}

/// Every node's proxy twin: a [`proxy::Proxier`] per node (which remembers
/// what it applied and sends only what changed), and the Services' proxy
/// model of the last sync, kept per Service so that a sync rebuilds only
/// the models of the Services or Endpoints that changed (at 10 000 Services
/// the whole model takes 12-30 ms; a deletion changes a handful).
#[derive(Default)]
pub struct Twins {
    proxiers: BTreeMap<String, proxy::Proxier>,
    /// What the last successful sync was made from (nothing changed: no sync).
    last: Option<Inputs>,
    /// The Services' models of the last sync, in the Services' order
    /// (shared with the nodes' syncs while they run).
    models: Arc<Vec<model::Service>>,
    /// Each model's Service and Endpoints (by address: the objects are
    /// kept alive by `last`, so an address is not reused meanwhile) and
    /// its place in `models`.
    made_from: HashMap<usize, (Option<usize>, usize)>,
    /// Each model's place by its Service's (namespace, name), and the
    /// Service it was made from: when only Endpoints changed, the models of
    /// those alone are made again.
    by_key: HashMap<(String, String), usize>,
    services: Vec<Arc<Service>>,
    /// The serving terminating endpoints the models were made with.
    fallback: Fallback,
}

/// What a sync reads: changes are told by pointer (see [`Collection`]).
struct Inputs {
    config: crate::lab::LabConfig,
    services: Collection<Service>,
    endpoints: Collection<Endpoints>,
    nodes: Vec<model::Node>,
}

/// The Services whose serving terminating endpoints differ in `a` and `b`.
fn fallback_moved(a: &Fallback, b: &Fallback) -> HashSet<(String, String)> {
    a.keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

impl Twins {
    /// Syncs every node's rules to `st` (concurrently); only what changed
    /// is sent, and nothing at all when no input changed.
    pub async fn sync(&mut self, lab: &str, st: &ClusterState) -> Result<(), ControllerError> {
        let nodes: Vec<model::Node> = st.config.nodes.iter().map(|n| node_only(st, n)).collect();
        let last = self.last.take();
        let fallback = terminating_fallback(st);
        let moved = fallback_moved(&self.fallback, &fallback);
        self.fallback = fallback;
        let services_same = moved.is_empty()
            && last.as_ref().is_some_and(|l| {
                l.config == st.config
                    && l.services.same(&st.services)
                    && l.endpoints.same(&st.endpoints)
            });
        if services_same && last.as_ref().is_some_and(|l| l.nodes == nodes) {
            self.last = last;
            return Ok(());
        }
        // The models that changed, when only a few Endpoints did and the
        // nodes are as they were: each node compares those alone.
        let mut only: Option<Vec<usize>> = None;
        if !services_same {
            let t = std::time::Instant::now();
            let only_endpoints = last.as_ref().filter(|l| {
                l.config == st.config
                    && l.services.same(&st.services)
                    && l.endpoints.len() == st.endpoints.len()
            });
            only = only_endpoints
                .and_then(|l| self.remodel_endpoints(&l.endpoints, st))
                .and_then(|mut places| {
                    places.extend(self.remodel_draining(&moved, st)?);
                    places.sort_unstable();
                    places.dedup();
                    Some(places)
                });
            if only.is_none() {
                self.remodel(st, &moved);
            }
            if !last.as_ref().is_some_and(|l| l.nodes == nodes) {
                only = None;
            }
            tracing::debug!(
                ms = t.elapsed().as_secs_f64() * 1e3,
                "services' proxy model"
            );
        }
        let only = only.map(Arc::new);
        let dir = paths::lab_dir(lab).join("proxy");
        std::fs::create_dir_all(&dir).map_err(|e| ControllerError::io(&dir, e))?;
        let mut proxiers = std::mem::take(&mut self.proxiers);
        // Each node's sync is a task of its own: on a runtime with several
        // threads they run side by side (the kernel's commit of a batch
        // into a table of 10 000 Services takes milliseconds of CPU).
        let mut jobs = Vec::new();
        for (node, n) in st.config.nodes.iter().zip(&nodes) {
            let netns = paths::node_netns(lab, node);
            let file = dir.join(format!("{node}.json"));
            let cached = proxiers.remove(&netns);
            let (node, n, services, only) =
                (node.clone(), n.clone(), self.models.clone(), only.clone());
            // A blocking task that waits on the sync's future: that
            // future holds borrows the compiler cannot prove Send.
            let handle = tokio::runtime::Handle::current();
            jobs.push(tokio::task::spawn_blocking(move || {
                handle.block_on(async move {
                    let mut proxier = match cached {
                        Some(p) => p,
                        None => match proxy::Proxier::load(&netns, &file) {
                            Ok(p) => p,
                            Err(e) => return (netns, None, Err(format!("node {node}: {e}"))),
                        },
                    };
                    let res = proxier
                        .sync_only(&n, &services, only.as_deref().map(Vec::as_slice))
                        .await;
                    if let Ok(stats) = &res {
                        tracing::debug!(
                            node,
                            services_changed = stats.services_changed,
                            commands = stats.commands,
                            generate_ms = stats.generate_time.as_secs_f64() * 1e3,
                            diff_ms = stats.diff_time.as_secs_f64() * 1e3,
                            apply_ms = stats.apply_time.as_secs_f64() * 1e3,
                            persist_ms = stats.persist_time.as_secs_f64() * 1e3,
                            "node's rules synced"
                        );
                    }
                    let res = res.map(|_| ()).map_err(|e| format!("node {node}: {e}"));
                    (netns, Some(proxier), res)
                })
            }));
        }
        let mut errors = Vec::new();
        for job in futures::future::join_all(jobs).await {
            let (netns, proxier, res) = job.map_err(|e| ControllerError::Runtime {
                message: format!("a node's rules sync: {e}"),
            })?;
            if let Some(p) = proxier {
                proxiers.insert(netns, p);
            }
            if let Err(e) = res {
                errors.push(e);
            }
        }
        self.proxiers = proxiers;
        if !errors.is_empty() {
            return Err(ControllerError::Runtime {
                message: format!("syncing service rules: {}", errors.join("; ")),
            });
        }
        self.last = Some(Inputs {
            config: st.config.clone(),
            services: st.services.clone(),
            endpoints: st.endpoints.clone(),
            nodes,
        });
        Ok(())
    }

    /// After the service plane's commit of what this sync was made from:
    /// the Endpoints as committed. The commit gave each new one its
    /// resourceVersion, a copy since this sync held it; holding the
    /// committed ones instead lets the others go (the scale lab kept a
    /// second copy of every Endpoints object), and the next sync finds
    /// them unchanged. Models made from an object now point at its copy.
    /// `alone`: the commit succeeded and nobody else committed between
    /// this sync and it (else the next sync sees what others changed).
    pub fn committed(&mut self, st: &ClusterState, alone: bool) {
        let Some(l) = &mut self.last else { return };
        if !alone || l.endpoints.len() != st.endpoints.len() {
            return;
        }
        let moved: HashMap<usize, usize> = l
            .endpoints
            .shared()
            .iter()
            .zip(st.endpoints.shared())
            .filter(|(a, b)| !Arc::ptr_eq(a, b))
            .map(|(a, b)| (Arc::as_ptr(a) as usize, Arc::as_ptr(b) as usize))
            .collect();
        if moved.is_empty() {
            return;
        }
        for (ep, _) in self.made_from.values_mut() {
            if let Some(to) = ep.and_then(|e| moved.get(&e)) {
                *ep = Some(*to);
            }
        }
        l.endpoints = st.endpoints.clone();
    }

    /// Rebuilds the Services' models, reusing each one whose Service and
    /// Endpoints are the very objects it was made from and whose serving
    /// terminating endpoints have not `moved`.
    fn remodel(&mut self, st: &ClusterState, moved: &HashSet<(String, String)>) {
        self.by_key.clear();
        self.services.clear();
        let endpoints = st.endpoints_index();
        let mut old: Vec<Option<model::Service>> = std::mem::take(Arc::make_mut(&mut self.models))
            .into_iter()
            .map(Some)
            .collect();
        let models = Arc::make_mut(&mut self.models);
        let old_from = std::mem::take(&mut self.made_from);
        for s in st.services.shared() {
            let ep = endpoints
                .get(&crate::cluster::services::ref_key(&s.metadata))
                .copied();
            let from = Arc::as_ptr(s) as usize;
            let ep_from = ep.map(|e| Arc::as_ptr(e) as usize);
            let k = ref_key(&s.metadata);
            let key = (k.0.to_string(), k.1.to_string());
            let reused = old_from
                .get(&from)
                .filter(|(e, _)| *e == ep_from && !moved.contains(&key))
                .and_then(|(_, i)| old[*i].take());
            let m = match reused {
                Some(m) => m,
                None => match service_model(s, ep.map(|e| &**e), fallback_of(&self.fallback, k)) {
                    Some(m) => m,
                    None => continue,
                },
            };
            self.made_from.insert(from, (ep_from, models.len()));
            self.by_key.entry(key).or_insert(models.len());
            self.services.push(s.clone());
            models.push(m);
        }
    }

    /// The Services are the same objects and the Endpoints as many as at
    /// the last sync: the models of the Services whose Endpoints object
    /// changed are made again, found by key. Returns their places in the
    /// models; None: this does not apply (the whole [`Self::remodel`] does).
    fn remodel_endpoints(
        &mut self,
        before: &Collection<Endpoints>,
        st: &ClusterState,
    ) -> Option<Vec<usize>> {
        use crate::cluster::services::ref_key;
        let mut changed: Vec<&Arc<Endpoints>> = Vec::new();
        for (a, b) in st.endpoints.shared().iter().zip(before.shared()) {
            if Arc::ptr_eq(a, b) {
                continue;
            }
            // Another Service's in the same place, or many: not for this.
            if ref_key(&a.metadata) != ref_key(&b.metadata) || changed.len() == 64 {
                return None;
            }
            changed.push(a);
        }
        let models = Arc::make_mut(&mut self.models);
        let mut places = Vec::new();
        for e in changed {
            let (ns, name) = ref_key(&e.metadata);
            let Some(&i) = self.by_key.get(&(ns.to_string(), name.to_string())) else {
                continue; // Endpoints of no modelled Service
            };
            let svc = self.services[i].clone();
            let m = service_model(&svc, Some(e), fallback_of(&self.fallback, (ns, name)))?;
            self.made_from.insert(
                Arc::as_ptr(&svc) as usize,
                (Some(Arc::as_ptr(e) as usize), i),
            );
            models[i] = m;
            places.push(i);
        }
        Some(places)
    }

    /// The models of the Services whose serving terminating endpoints
    /// `moved` are made again, found by key (their Services and Endpoints
    /// are the ones the models were made from). Returns their places.
    fn remodel_draining(
        &mut self,
        moved: &HashSet<(String, String)>,
        st: &ClusterState,
    ) -> Option<Vec<usize>> {
        if moved.is_empty() {
            return Some(Vec::new());
        }
        let endpoints = st.endpoints_index();
        let models = Arc::make_mut(&mut self.models);
        let mut places = Vec::new();
        for key in moved {
            let Some(&i) = self.by_key.get(key) else {
                continue; // no modelled Service
            };
            let svc = self.services[i].clone();
            let ep = endpoints.get(&(key.0.as_str(), key.1.as_str())).copied();
            let m = service_model(
                &svc,
                ep.map(|e| &**e),
                fallback_of(&self.fallback, (&key.0, &key.1)),
            )?;
            self.made_from.insert(
                Arc::as_ptr(&svc) as usize,
                (ep.map(|e| Arc::as_ptr(e) as usize), i),
            );
            models[i] = m;
            places.push(i);
        }
        Some(places)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn host_network_pods_get_no_host_port_dnat() {
        // Both pods publish port 8080 on node-1: the normal pod through
        // the portmap DNAT, the hostNetwork pod by listening on it (the
        // lab file pins both, as nodeName binds without the filter).
        let lab = "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  dns:\n    enabled: false\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: hn\nspec:\n  hostNetwork: true\n  nodeName: node-1\n  containers:\n  - name: c\n    image: nginx\n    ports: [{containerPort: 8080}]\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: portmap\nspec:\n  nodeName: node-1\n  containers:\n  - name: c\n    image: nginx\n    ports: [{containerPort: 80, hostPort: 8081}]\n";
        let spec =
            crate::lab::load_str(std::path::Path::new("t.yaml"), lab, &Default::default()).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let st = ClusterState::plan(
            &spec,
            &crate::cluster::HostInfo::default(),
            chrono::Utc::now(),
            &mut rng,
        )
        .unwrap();
        let (node, _) = node_model(&st, "node-1");
        let pods: Vec<(&str, u16)> = node
            .host_ports
            .iter()
            .map(|h| (h.pod.as_str(), h.host_port))
            .collect();
        assert_eq!(pods, [("default/portmap", 8081)]);
    }

    /// The Service's model with `terminating` of its two ready pods being
    /// deleted: the endpoints it would draw from.
    fn draining(terminating: &[usize]) -> Vec<Ipv4Addr> {
        let lab = "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  dns:\n    enabled: false\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {run: web}\n  replicas: 2\n  template:\n    metadata:\n      labels: {run: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {run: web}\n  ports:\n  - port: 80\n";
        let spec =
            crate::lab::load_str(std::path::Path::new("t.yaml"), lab, &Default::default()).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut st = ClusterState::plan(
            &spec,
            &crate::cluster::HostInfo::default(),
            chrono::Utc::now(),
            &mut rng,
        )
        .unwrap();
        for (i, mut p) in st.pods.iter_mut().enumerate() {
            p.status.as_mut().unwrap().conditions =
                Some(vec![k8s_openapi::api::core::v1::PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]);
            if terminating.contains(&i) {
                p.metadata.deletion_timestamp = Some(state::time(chrono::Utc::now()));
            }
        }
        st.refresh_endpoints();
        let models = services_model(&st);
        let web = models.iter().find(|m| m.name == "web").unwrap();
        web.ports[0].endpoints.iter().map(|e| e.ip).collect()
    }

    #[test]
    fn terminating_endpoints_serve_only_when_none_is_ready() {
        assert_eq!(draining(&[]).len(), 2);
        // One pod terminating: the ready one alone, as Endpoints say.
        let one = draining(&[0]);
        assert_eq!(one.len(), 1);
        // Both terminating but still serving: kube-proxy falls back to
        // them rather than refuse.
        let both = draining(&[0, 1]);
        assert_eq!(both.len(), 2, "{both:?}");
        assert!(both.contains(&one[0]));
    }
}
