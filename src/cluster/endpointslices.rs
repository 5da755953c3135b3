//! EndpointSlices (discovery.k8s.io/v1), as three owners make them in a real
//! cluster, computed from the Services, their Endpoints and the Pods. Pure.
//!
//! - the endpointslice controller, for each Service with a selector: one
//!   slice per address family and port set, at most 100 endpoints each,
//!   named `<service>-<5 chars>` (generateName), owned by the Service;
//!   every endpoint carries kube-proxy's three conditions (ready, serving,
//!   terminating), so terminating pods stay visible while they drain;
//!   a Service that selects nothing still gets one empty slice;
//! - the mirroring controller, for a Service without a selector whose
//!   Endpoints a user wrote;
//! - kube-apiserver itself, for the `kubernetes` Service: one slice named
//!   `kubernetes`, labelled only with the service name, no owner.
//!
//! Names are drawn once and kept in the state: a slice keeps its name for as
//! long as its Service has as many slices, across restarts of the lab.

use super::collection::{keep_if_equal, Collection};
use super::services::resolve_target_port;
use super::state::{self, ClusterState};
use super::{names, Selector};
use k8s_openapi::api::core::v1::{Endpoints, ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// The label naming a slice's Service.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label naming the controller that owns a slice.
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER: &str = "endpointslice-controller.k8s.io";
pub const MIRRORING: &str = "endpointslicemirroring-controller.k8s.io";
/// On an Endpoints object: the mirroring controller leaves it alone.
pub const SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
/// The endpointslice controller's default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS: usize = 100;
/// `names.SimpleNameGenerator`: a generated name is at most 63 characters,
/// so the base is cut to 58.
const MAX_BASE: usize = 58;

/// Who makes a Service's slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Controller,
    Mirroring,
    ApiServer,
}

/// One slice's content before it has a name.
struct Wanted {
    ports: Option<Vec<EndpointPort>>,
    endpoints: Vec<Endpoint>,
}

impl ClusterState {
    /// Recomputes every Service's EndpointSlices from its Endpoints (already
    /// refreshed) and pods. Returns whether anything changed.
    pub fn refresh_endpoint_slices(&mut self) -> bool {
        self.refresh_slices(None)
    }

    /// [`Self::refresh_endpoint_slices`] for the `affected` Services only
    /// (None: all); the others keep their slices.
    pub(super) fn refresh_slices(&mut self, affected: Option<&super::services::Affected>) -> bool {
        if let Some(changed) = affected.and_then(|a| self.refresh_slices_in_place(a)) {
            return changed;
        }
        let now = state::time(chrono::Utc::now());
        let (pods, terminating) = pods_by_key(&self.pods);
        let endpoints = self.endpoints_by_key();
        // The slices each Service has now, in the order they are kept.
        let mut old: HashMap<(&str, &str), Vec<&Arc<EndpointSlice>>> = HashMap::new();
        for s in self.endpoint_slices.shared() {
            if let Some(svc) = s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME)) {
                old.entry((state::namespace(&s.metadata), svc.as_str()))
                    .or_default()
                    .push(s);
            }
        }
        let taken: HashSet<(&str, &str)> = self
            .endpoint_slices
            .iter()
            .map(|s| {
                (
                    state::namespace(&s.metadata),
                    s.metadata.name.as_deref().unwrap_or_default(),
                )
            })
            .collect();
        let mut new_names: Vec<(String, String)> = Vec::new();
        let mut out: Vec<Arc<EndpointSlice>> = Vec::new();
        for svc in &self.services {
            let ns = state::namespace(&svc.metadata);
            let name = svc.metadata.name.as_deref().unwrap_or_default();
            if affected.is_some_and(|a| !a.contains(&(ns.to_string(), name.to_string()))) {
                out.extend(
                    old.get(&(ns, name))
                        .into_iter()
                        .flatten()
                        .map(|s| Arc::clone(s)),
                );
                continue;
            }
            let ep = endpoints.get(&(ns, name)).copied();
            let Some((owner, wanted)) = wanted_slices(svc, ep, &pods, &terminating) else {
                continue;
            };
            let before = old.get(&(ns, name)).cloned().unwrap_or_default();
            for (i, w) in wanted.into_iter().enumerate() {
                let prior = before.get(i).copied();
                let slice_name = match (owner, prior) {
                    (Owner::ApiServer, _) => name.to_string(),
                    (_, Some(p)) => p.metadata.name.clone().unwrap_or_default(),
                    (_, None) => {
                        let base: String = format!("{name}-").chars().take(MAX_BASE).collect();
                        let seed = svc.metadata.uid.as_deref().unwrap_or(name);
                        let mut n = 0;
                        loop {
                            let mut rng = names::seeded_rng(&format!("{seed}/{i}/{n}"));
                            let candidate = format!("{base}{}", names::random_suffix(&mut rng));
                            let fresh = !taken.contains(&(ns, candidate.as_str()))
                                && !new_names.contains(&(ns.to_string(), candidate.clone()));
                            if fresh {
                                new_names.push((ns.to_string(), candidate.clone()));
                                break candidate;
                            }
                            n += 1;
                        }
                    }
                };
                out.push(keep_if_equal(
                    prior,
                    slice(svc, owner, slice_name, w, prior.map(|p| &**p), &now),
                ));
            }
        }
        fn by_key(s: &EndpointSlice) -> (&str, &str) {
            (
                state::namespace(&s.metadata),
                s.metadata.name.as_deref().unwrap_or_default(),
            )
        }
        out.sort_by(|a, b| by_key(a).cmp(&by_key(b)));
        let out = Collection::from_shared(out);
        let changed = !out.same(&self.endpoint_slices);
        self.endpoint_slices = out;
        changed
    }

    /// The refresh of a few `affected` Services whose slices keep their
    /// number: each slice is replaced where it is, without looking at the
    /// other Services' (at 10 000 Services, rebuilding and sorting the
    /// whole list took most of a deletion's refresh). None: a Service
    /// needs more or fewer slices (new names, a new order): the whole
    /// refresh does it.
    fn refresh_slices_in_place(&mut self, affected: &super::services::Affected) -> Option<bool> {
        let now = state::time(chrono::Utc::now());
        let (pods, terminating) = pods_by_key(&self.pods);
        // One pass over each list (see refresh_endpoints_in_place).
        let wanted: HashMap<(&str, &str), usize> = affected
            .iter()
            .enumerate()
            .map(|(i, (ns, name))| ((ns.as_str(), name.as_str()), i))
            .collect();
        fn key(m: &ObjectMeta) -> (&str, &str) {
            (state::namespace(m), m.name.as_deref().unwrap_or_default())
        }
        let mut services: Vec<Option<&Service>> = vec![None; affected.len()];
        for svc in &self.services {
            if let Some(&i) = wanted.get(&key(&svc.metadata)) {
                services[i].get_or_insert(svc);
            }
        }
        let mut endpoints: Vec<Option<&Endpoints>> = vec![None; affected.len()];
        for e in &self.endpoints {
            if let Some(&i) = wanted.get(&key(&e.metadata)) {
                endpoints[i].get_or_insert(e);
            }
        }
        let mut at: Vec<Vec<usize>> = vec![Vec::new(); affected.len()];
        for (pos, s) in self.endpoint_slices.iter().enumerate() {
            let Some(svc) = s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME)) else {
                continue;
            };
            if let Some(&i) = wanted.get(&(state::namespace(&s.metadata), svc.as_str())) {
                at[i].push(pos);
            }
        }
        let mut updates: Vec<(usize, Arc<EndpointSlice>)> = Vec::new();
        for ((svc, ep), at) in services.into_iter().zip(endpoints).zip(at) {
            let Some(svc) = svc else {
                continue; // gone: its slices went with it
            };
            let (owner, wanted) = wanted_slices(svc, ep, &pods, &terminating)
                .unwrap_or((Owner::Controller, Vec::new()));
            if at.len() != wanted.len() {
                return None;
            }
            for (i, w) in at.into_iter().zip(wanted) {
                let prior = &self.endpoint_slices.shared()[i];
                let name = prior.metadata.name.clone().unwrap_or_default();
                let new = keep_if_equal(Some(prior), slice(svc, owner, name, w, Some(prior), &now));
                if !Arc::ptr_eq(prior, &new) {
                    updates.push((i, new));
                }
            }
        }
        let changed = !updates.is_empty();
        for (i, new) in updates {
            self.endpoint_slices.set_shared(i, new);
        }
        Some(changed)
    }

    /// The slices of one Service (`kubectl describe svc` reads these).
    pub fn endpoint_slices_of<'a>(
        &'a self,
        namespace: &'a str,
        service: &'a str,
    ) -> impl Iterator<Item = &'a EndpointSlice> + 'a {
        self.endpoint_slices.iter().filter(move |s| {
            state::namespace(&s.metadata) == namespace
                && s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME))
                    .map(String::as_str)
                    == Some(service)
        })
    }
}

/// A whole EndpointSlice: `w` under the name and metadata its owner gives.
fn slice(
    svc: &Service,
    owner: Owner,
    name: String,
    w: Wanted,
    prior: Option<&EndpointSlice>,
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> EndpointSlice {
    let ns = state::namespace(&svc.metadata);
    let svc_name = svc.metadata.name.clone().unwrap_or_default();
    let mut labels = BTreeMap::new();
    if owner == Owner::Controller {
        // The controller copies the Service's labels, then adds its own.
        labels.extend(svc.metadata.labels.clone().unwrap_or_default());
        let headless = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None");
        if headless {
            labels.insert("service.kubernetes.io/headless".into(), String::new());
        }
    }
    labels.insert(SERVICE_NAME.into(), svc_name.clone());
    match owner {
        Owner::Controller => {
            labels.insert(MANAGED_BY.into(), CONTROLLER.into());
        }
        Owner::Mirroring => {
            labels.insert(MANAGED_BY.into(), MIRRORING.into());
        }
        Owner::ApiServer => {}
    }
    let generated = owner != Owner::ApiServer;
    let owner_references = generated.then(|| {
        vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Service".into(),
            name: svc_name.clone(),
            uid: svc.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]
    });
    let uid = prior
        .and_then(|p| p.metadata.uid.clone())
        .unwrap_or_else(|| {
            let seed = format!("{ns}/{name}/{}", svc.metadata.uid.as_deref().unwrap_or(""));
            state::uid(&mut names::seeded_rng(&seed))
        });
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(name),
            generate_name: generated.then(|| {
                format!("{svc_name}-")
                    .chars()
                    .take(MAX_BASE)
                    .collect::<String>()
            }),
            namespace: Some(ns.to_string()),
            labels: Some(labels),
            owner_references,
            uid: Some(uid),
            creation_timestamp: Some(
                prior
                    .and_then(|p| p.metadata.creation_timestamp.clone())
                    .unwrap_or_else(|| now.clone()),
            ),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: w.endpoints,
        ports: w.ports,
    }
}

fn slice_port(name: Option<&str>, port: i32, protocol: &str, app: Option<String>) -> EndpointPort {
    EndpointPort {
        // Always set, "" for an unnamed port, as the controllers write it
        // (kubectl describe matches it against the Service port's name).
        name: Some(name.unwrap_or_default().to_string()),
        port: Some(port),
        protocol: Some(protocol.to_string()),
        app_protocol: app,
    }
}

fn ip_key(e: &Endpoint) -> u32 {
    e.addresses
        .first()
        .and_then(|a| a.parse::<Ipv4Addr>().ok())
        .map(u32::from)
        .unwrap_or(0)
}

/// At most [`MAX_ENDPOINTS`] per slice, in address order.
fn chunked(ports: Option<Vec<EndpointPort>>, mut eps: Vec<Endpoint>, out: &mut Vec<Wanted>) {
    eps.sort_by_key(ip_key);
    if eps.is_empty() {
        out.push(Wanted {
            ports,
            endpoints: eps,
        });
        return;
    }
    for chunk in eps.chunks(MAX_ENDPOINTS) {
        out.push(Wanted {
            ports: ports.clone(),
            endpoints: chunk.to_vec(),
        });
    }
}

/// Slices as kube-apiserver (the `kubernetes` Service) and the mirroring
/// controller write them from an Endpoints object: one per subset, the
/// ready addresses then the others, with the ready condition only.
fn from_endpoints(ep: Option<&Endpoints>, mirror: bool) -> Vec<Wanted> {
    let mut out = Vec::new();
    for subset in ep.and_then(|e| e.subsets.as_ref()).into_iter().flatten() {
        let ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| {
                slice_port(
                    p.name.as_deref(),
                    p.port,
                    p.protocol.as_deref().unwrap_or("TCP"),
                    p.app_protocol.clone(),
                )
            })
            .collect();
        let mut eps = Vec::new();
        for (ready, list) in [
            (true, &subset.addresses),
            (false, &subset.not_ready_addresses),
        ] {
            for a in list.iter().flatten() {
                eps.push(Endpoint {
                    addresses: vec![a.ip.clone()],
                    conditions: Some(EndpointConditions {
                        ready: Some(ready),
                        ..Default::default()
                    }),
                    hostname: a.hostname.clone(),
                    node_name: a.node_name.clone(),
                    target_ref: a.target_ref.clone(),
                    ..Default::default()
                });
            }
        }
        if mirror {
            chunked(Some(ports), eps, &mut out);
        } else {
            // kube-apiserver writes the first subset as one slice.
            out.push(Wanted {
                ports: Some(ports),
                endpoints: eps,
            });
            break;
        }
    }
    out
}

/// The endpointslice controller's slices of a selector Service: its
/// Endpoints' addresses (the pods it selects that have an address and are
/// not going away) and its terminating pods, each with the conditions
/// kube-proxy reads. One slice per port set (pods can resolve a named
/// targetPort differently), at least one slice.
/// The pods by (namespace, name), and those terminating.
#[allow(clippy::type_complexity)]
fn pods_by_key(pods: &Collection<Pod>) -> (HashMap<(&str, &str), &Pod>, Vec<&Pod>) {
    let by_key = pods
        .iter()
        .map(|p| {
            (
                (
                    state::namespace(&p.metadata),
                    p.metadata.name.as_deref().unwrap_or_default(),
                ),
                p,
            )
        })
        .collect();
    let terminating = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .collect();
    (by_key, terminating)
}

/// Who makes a Service's slices and what they hold (None: it has none).
fn wanted_slices(
    svc: &Service,
    ep: Option<&Endpoints>,
    pods: &HashMap<(&str, &str), &Pod>,
    terminating: &[&Pod],
) -> Option<(Owner, Vec<Wanted>)> {
    let ns = state::namespace(&svc.metadata);
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    if (ns, name) == ("default", "kubernetes") {
        return Some((Owner::ApiServer, from_endpoints(ep, false)));
    }
    if svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some()
    {
        if super::services::service_type(svc) == "ExternalName" {
            return None;
        }
        return Some((Owner::Controller, selected(svc, ep, pods, terminating)));
    }
    let ep = ep?;
    let skip = ep
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.get(SKIP_MIRROR).map(String::as_str) == Some("true"));
    if skip {
        return None;
    }
    Some((Owner::Mirroring, from_endpoints(Some(ep), true)))
}

fn selected(
    svc: &Service,
    ep: Option<&Endpoints>,
    pods: &HashMap<(&str, &str), &Pod>,
    terminating: &[&Pod],
) -> Vec<Wanted> {
    let ns = state::namespace(&svc.metadata);
    let spec = svc.spec.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let mut groups: BTreeMap<Vec<(String, i32, String)>, Vec<Endpoint>> = BTreeMap::new();
    let endpoint = |p: Option<&Pod>, ip: String, node: Option<String>, hostname, target_ref| {
        let serving = p.is_some_and(state::pod_ready);
        let terminating = p.is_some_and(|p| p.metadata.deletion_timestamp.is_some());
        Endpoint {
            addresses: vec![ip],
            conditions: Some(EndpointConditions {
                ready: Some(publish_not_ready || (serving && !terminating)),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname,
            node_name: node,
            target_ref,
            ..Default::default()
        }
    };
    for subset in ep.and_then(|e| e.subsets.as_ref()).into_iter().flatten() {
        let key: Vec<(String, i32, String)> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| {
                (
                    p.name.clone().unwrap_or_default(),
                    p.port,
                    p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                )
            })
            .collect();
        let group = groups.entry(key).or_default();
        let addresses = subset.addresses.iter().flatten();
        for a in addresses.chain(subset.not_ready_addresses.iter().flatten()) {
            let pod = a
                .target_ref
                .as_ref()
                .and_then(|r| r.name.as_deref())
                .and_then(|n| pods.get(&(ns, n)).copied());
            group.push(endpoint(
                pod,
                a.ip.clone(),
                a.node_name.clone(),
                a.hostname.clone(),
                a.target_ref.clone(),
            ));
        }
    }
    // Terminating pods are out of the Endpoints but stay in the slices.
    if let Some(selector) = spec.selector.as_ref() {
        let sel = Selector::from_labels(selector);
        for p in terminating {
            if state::namespace(&p.metadata) != ns || !sel.matches(p.metadata.labels.as_ref()) {
                continue;
            }
            let Some(ip) = state::pod_ip(p) else { continue };
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            if matches!(phase, Some("Succeeded") | Some("Failed")) {
                continue;
            }
            let key: Vec<(String, i32, String)> = spec
                .ports
                .iter()
                .flatten()
                .filter_map(|sp| {
                    Some((
                        sp.name.clone().unwrap_or_default(),
                        resolve_target_port(sp, p)?,
                        sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    ))
                })
                .collect();
            if key.is_empty() {
                continue;
            }
            let pspec = p.spec.as_ref();
            let hostname = pspec
                .and_then(|s| s.hostname.clone())
                .filter(|_| pspec.and_then(|s| s.subdomain.as_ref()) == svc.metadata.name.as_ref());
            groups.entry(key).or_default().push(endpoint(
                Some(p),
                ip.to_string(),
                state::pod_node(p).map(String::from),
                hostname,
                Some(ObjectReference {
                    kind: Some("Pod".into()),
                    name: p.metadata.name.clone(),
                    namespace: Some(ns.to_string()),
                    uid: p.metadata.uid.clone(),
                    ..Default::default()
                }),
            ));
        }
    }
    let app_protocol = |name: &str, protocol: &str| {
        spec.ports
            .iter()
            .flatten()
            .find(|sp| {
                sp.name.as_deref().unwrap_or_default() == name
                    && sp.protocol.as_deref().unwrap_or("TCP") == protocol
            })
            .and_then(|sp| sp.app_protocol.clone())
    };
    let mut out = Vec::new();
    for (key, eps) in groups {
        let ports = key
            .iter()
            .map(|(name, port, protocol)| {
                slice_port(Some(name), *port, protocol, app_protocol(name, protocol))
            })
            .collect();
        chunked(Some(ports), eps, &mut out);
    }
    if out.is_empty() {
        // The controller's placeholder: a Service that selects nothing
        // still has a slice, with no ports and no endpoints.
        out.push(Wanted {
            ports: None,
            endpoints: Vec::new(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::HostInfo;
    use k8s_openapi::api::core::v1::PodCondition;
    use rand::SeedableRng;
    use std::path::Path;

    fn lab(replicas: usize) -> ClusterState {
        let yaml = format!("apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  podCIDRMaskSize: 22\n  dns:\n    enabled: false\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {{run: web}}\n  replicas: {replicas}\n  template:\n    metadata:\n      labels: {{run: web}}\n    spec:\n      containers:\n      - name: web\n        image: nginx\n        ports: [{{containerPort: 80, name: http}}]\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  labels: {{app: web}}\nspec:\n  selector: {{run: web}}\n  ports:\n  - port: 80\n    targetPort: http\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: nothing\nspec:\n  selector: {{run: nothing}}\n  ports:\n  - port: 80\n");
        let spec = crate::lab::load_str(Path::new("t.yaml"), &yaml, &Default::default()).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut st =
            ClusterState::plan(&spec, &HostInfo::default(), chrono::Utc::now(), &mut rng).unwrap();
        set_ready(&mut st, |_| true);
        st
    }

    fn set_ready(st: &mut ClusterState, ready: impl Fn(usize) -> bool) {
        for (i, mut p) in st.pods.iter_mut().enumerate() {
            let status = if ready(i) { "True" } else { "False" };
            p.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
                type_: "Ready".into(),
                status: status.into(),
                ..Default::default()
            }]);
        }
        st.refresh_endpoints();
    }

    fn of<'a>(st: &'a ClusterState, svc: &'a str) -> Vec<&'a EndpointSlice> {
        st.endpoint_slices_of("default", svc).collect()
    }

    fn conditions(e: &Endpoint) -> (bool, bool, bool) {
        let c = e.conditions.clone().unwrap();
        (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
    }

    #[test]
    fn a_selector_service_gets_a_controller_slice() {
        let mut st = lab(3);
        let slices = of(&st, "web");
        assert_eq!(slices.len(), 1);
        let s = slices[0];
        let name = s.metadata.name.clone().unwrap();
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        assert_eq!(s.metadata.generate_name.as_deref(), Some("web-"));
        let labels = s.metadata.labels.clone().unwrap();
        assert_eq!(labels[SERVICE_NAME], "web");
        assert_eq!(labels[MANAGED_BY], CONTROLLER);
        assert_eq!(labels["app"], "web", "the Service's labels are copied");
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        let svc = st.service("default", "web").unwrap();
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), Some(&owner.uid)),
            ("Service", "web", svc.metadata.uid.as_ref())
        );
        assert_eq!(owner.controller, Some(true));
        assert_eq!(s.address_type, "IPv4");
        // The named targetPort resolved; an unnamed port's name is "".
        let port = &s.ports.as_ref().unwrap()[0];
        assert_eq!(
            (port.name.as_deref(), port.port, port.protocol.as_deref()),
            (Some(""), Some(80), Some("TCP"))
        );
        assert_eq!(s.endpoints.len(), 3);
        for e in &s.endpoints {
            assert_eq!(conditions(e), (true, true, false));
            let pod = e.target_ref.as_ref().unwrap();
            assert_eq!(pod.kind.as_deref(), Some("Pod"));
            let p = st.pod("default", pod.name.as_deref().unwrap()).unwrap();
            assert_eq!(
                e.addresses,
                [p.status.as_ref().unwrap().pod_ip.clone().unwrap()]
            );
            assert_eq!(e.node_name.as_deref(), state::pod_node(p));
            assert!(e.zone.is_none());
        }
        // Nothing changed: nothing to write, and the name stays.
        assert!(!st.refresh_endpoint_slices());
        assert_eq!(of(&st, "web")[0].metadata.name.as_deref(), Some(&*name));
    }

    #[test]
    fn readiness_and_termination_are_conditions() {
        let mut st = lab(3);
        set_ready(&mut st, |i| i != 1);
        let not_ready = st.pods[1].metadata.name.clone();
        let gone = st.pods[0].metadata.name.clone();
        st.pods[0].metadata.deletion_timestamp = Some(state::time(chrono::Utc::now()));
        assert!(st.refresh_endpoints());
        let s = of(&st, "web")[0];
        assert_eq!(
            s.endpoints.len(),
            3,
            "the terminating pod stays in the slice"
        );
        let by_pod = |n: &Option<String>| {
            let e = s
                .endpoints
                .iter()
                .find(|e| e.target_ref.as_ref().unwrap().name == *n)
                .unwrap();
            conditions(e)
        };
        assert_eq!(by_pod(&not_ready), (false, false, false));
        assert_eq!(by_pod(&gone), (false, true, true));
        assert_eq!(by_pod(&st.pods[2].metadata.name), (true, true, false));
        // The Endpoints object has no terminating pod at all.
        let ep = st.endpoints_of("default", "web").unwrap();
        let listed = crate::cluster::services::endpoints_summary(Some(ep), usize::MAX);
        assert_eq!(listed.matches(':').count(), 1, "{listed}");
    }

    #[test]
    fn at_most_100_endpoints_per_slice_with_names_that_stay() {
        let mut st = lab(250);
        let slices = of(&st, "web");
        let sizes: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 250);
        assert!(sizes.iter().all(|n| *n <= MAX_ENDPOINTS), "{sizes:?}");
        assert_eq!(slices.len(), 3);
        let names: HashSet<_> = slices.iter().map(|s| s.metadata.name.clone()).collect();
        assert_eq!(names.len(), 3);
        let first = slices[0].metadata.name.clone();
        // Scaled down to two pods: one slice, under a name it had.
        st.pods.truncate(2);
        assert!(st.refresh_endpoints());
        let slices = of(&st, "web");
        assert_eq!(slices.len(), 1);
        assert_eq!(slices[0].endpoints.len(), 2);
        assert_eq!(slices[0].metadata.name, first);
    }

    #[test]
    fn a_service_that_selects_nothing_has_a_placeholder() {
        let st = lab(1);
        let slices = of(&st, "nothing");
        assert_eq!(slices.len(), 1);
        assert!(slices[0].endpoints.is_empty() && slices[0].ports.is_none());
        let t = crate::cluster::tables::endpoint_slices(&slices, chrono::Utc::now());
        assert_eq!(t.rows[0].cells[2], "<unset>");
        assert_eq!(t.rows[0].cells[3], "<unset>");
    }

    #[test]
    fn the_kubernetes_slice_is_the_apiservers() {
        let st = lab(1);
        let slices = of(&st, "kubernetes");
        assert_eq!(slices.len(), 1);
        let s = slices[0];
        assert_eq!(s.metadata.name.as_deref(), Some("kubernetes"));
        assert!(s.metadata.generate_name.is_none() && s.metadata.owner_references.is_none());
        assert_eq!(
            s.metadata.labels.clone().unwrap(),
            BTreeMap::from([(SERVICE_NAME.to_string(), "kubernetes".to_string())])
        );
        assert_eq!(s.endpoints.len(), 1);
        assert_eq!(s.endpoints[0].addresses, ["172.18.0.1"]);
        let c = s.endpoints[0].conditions.clone().unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(true), None, None)
        );
        let p = &s.ports.as_ref().unwrap()[0];
        assert_eq!((p.name.as_deref(), p.port), (Some("https"), Some(6443)));
        // Its Endpoints say the same, and are not mirrored again.
        let ep = st.endpoints_of("default", "kubernetes").unwrap();
        assert_eq!(
            crate::cluster::services::endpoints_summary(Some(ep), 3),
            "172.18.0.1:6443"
        );
        let t = crate::cluster::tables::endpoint_slices(&slices, chrono::Utc::now());
        assert_eq!(t.rows[0].cells[1..4], ["IPv4", "6443", "172.18.0.1"]);
    }

    #[test]
    fn user_endpoints_of_a_selectorless_service_are_mirrored() {
        let mut st = lab(1);
        let mut svc = st.service("default", "nothing").unwrap().clone();
        svc.metadata.name = Some("outside".into());
        svc.metadata.uid = None;
        svc.spec.as_mut().unwrap().selector = None;
        svc.spec.as_mut().unwrap().cluster_ip = None;
        svc.spec.as_mut().unwrap().cluster_ips = None;
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        st.upsert_service(svc, chrono::Utc::now(), &mut rng)
            .unwrap();
        let mut ep = st.endpoints_of("default", "kubernetes").unwrap().clone();
        ep.metadata.name = Some("outside".into());
        ep.metadata.labels = None;
        st.endpoints.push(ep);
        st.refresh_endpoints();
        let slices = of(&st, "outside");
        assert_eq!(slices.len(), 1);
        let labels = slices[0].metadata.labels.clone().unwrap();
        assert_eq!(labels[MANAGED_BY], MIRRORING);
        assert_eq!(slices[0].endpoints[0].addresses, ["172.18.0.1"]);
        // Deleting the Service deletes its slices.
        st.delete_service("default", "outside").unwrap();
        assert!(of(&st, "outside").is_empty());
    }
}
