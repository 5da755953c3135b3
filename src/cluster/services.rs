//! Services in the object store: clusterIP and nodePort allocation as the API
//! server does it, and Endpoints as the endpoints controller computes them
//! from the pods a Service selects. Pure.

use super::collection::keep_if_equal;
use super::state::{self, ClusterState};
use super::{Collection, Selector};
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

pub const NODE_PORT_MIN: u16 = 30000;
pub const NODE_PORT_MAX: u16 = 32767;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServiceError {
    #[error("Service \"{service}\" is invalid: {message}")]
    Invalid { service: String, message: String },
    #[error("services \"{0}\" already exists")]
    Exists(String),
    #[error("services \"{0}\" not found")]
    NotFound(String),
}

fn invalid(service: &str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        service: service.into(),
        message: message.into(),
    }
}

/// The clusterIP of the `kubernetes` service: the first address of the range.
pub fn kubernetes_ip(service_cidr: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(service_cidr.network()) + 1)
}

/// The clusterIP kube-dns gets: the tenth address of the range.
pub fn dns_ip(service_cidr: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(service_cidr.network()) + 10)
}

pub fn service_type(s: &Service) -> &str {
    s.spec
        .as_ref()
        .and_then(|sp| sp.type_.as_deref())
        .unwrap_or("ClusterIP")
}

pub fn cluster_ip(s: &Service) -> Option<Ipv4Addr> {
    s.spec.as_ref()?.cluster_ip.as_deref()?.parse().ok()
}

/// An object's (namespace, name), without copying.
pub fn ref_key(meta: &ObjectMeta) -> (&str, &str) {
    (
        state::namespace(meta),
        meta.name.as_deref().unwrap_or_default(),
    )
}

/// Endpoints by key; the first of a key wins, as a scan would find it.
fn endpoints_index(
    list: &Collection<Endpoints>,
) -> std::collections::HashMap<(&str, &str), &Arc<Endpoints>> {
    let mut index = std::collections::HashMap::with_capacity(list.len());
    for e in list.shared() {
        index.entry(ref_key(&e.metadata)).or_insert(e);
    }
    index
}

fn key(meta: &ObjectMeta) -> (String, String) {
    (
        state::namespace(meta).to_string(),
        meta.name.clone().unwrap_or_default(),
    )
}

impl ClusterState {
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.services
            .iter()
            .find(|s| ref_key(&s.metadata) == (namespace, name))
    }

    /// Creates a Service, or updates one that exists (as `kubectl apply`):
    /// defaults and validates it, keeps an existing clusterIP and nodePorts,
    /// allocates what is missing, releases nodePorts a type change drops.
    /// Many at once: [`ServiceBatch`].
    pub fn upsert_service(
        &mut self,
        svc: Service,
        now: chrono::DateTime<chrono::Utc>,
        rng: &mut impl rand::Rng,
    ) -> Result<bool, ServiceError> {
        self.service_batch().upsert(svc, now, rng)
    }

    /// Upserts many services against one index of those that exist.
    pub fn service_batch(&mut self) -> ServiceBatch<'_> {
        ServiceBatch::new(self)
    }

    pub fn delete_service(&mut self, namespace: &str, name: &str) -> Result<(), ServiceError> {
        let k = (namespace.to_string(), name.to_string());
        let before = self.services.len();
        self.services.retain(|s| key(&s.metadata) != k);
        self.endpoints.retain(|e| key(&e.metadata) != k);
        self.endpoint_slices.retain(|e| {
            state::namespace(&e.metadata) != namespace
                || e.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(super::endpointslices::SERVICE_NAME))
                    .map(String::as_str)
                    != Some(name)
        });
        if self.services.len() == before {
            return Err(ServiceError::NotFound(name.into()));
        }
        Ok(())
    }

    /// Recomputes every selector Service's Endpoints from the pods (ready
    /// pods as addresses, the others as notReadyAddresses), the
    /// `kubernetes` Service's (the lab's API inside the lab), and then every
    /// EndpointSlice from them. Returns whether anything changed.
    ///
    /// Only the Services whose inputs changed since the last refresh are
    /// recomputed (see [`Memo`]); the others keep their objects.
    pub fn refresh_endpoints(&mut self) -> bool {
        let affected = self.endpoints_affected();
        let (endpoints, slices) = if affected.as_ref().is_some_and(|a| a.is_empty()) {
            (false, false)
        } else {
            (
                self.refresh_endpoints_only(affected.as_ref()),
                self.refresh_slices(affected.as_ref()),
            )
        };
        self.endpoints_memo = Memo(Some(Arc::new(MemoInput {
            config: self.config.clone(),
            pods: self.pods.clone(),
            services: self.services.clone(),
            endpoints: self.endpoints.clone(),
            slices: self.endpoint_slices.clone(),
            released: false,
        })));
        endpoints || slices
    }

    /// The Services whose Endpoints and slices may differ from what the
    /// last refresh made: those added or changed since, and those whose
    /// selector matches a pod added, changed or removed since (as it is
    /// now and as it was). None: all of them (no refresh yet, the lab's
    /// config changed, someone else changed Endpoints or slices, or too
    /// many pods changed for the check to pay).
    fn endpoints_affected(&self) -> Option<Affected> {
        let m = self.endpoints_memo.0.as_ref()?;
        // (The refresh's own commit gives what it made new resourceVersions:
        // that is no change by others.)
        if m.config != self.config
            || !m.endpoints.same_but_versions(&self.endpoints)
            || !m.slices.same_but_versions(&self.endpoint_slices)
        {
            tracing::debug!(
                "endpoints refresh: Endpoints or slices changed by others; all of them"
            );
            return None;
        }
        let mut out = Affected::new();
        if !m.services.same(&self.services) {
            let before: HashSet<*const Service> =
                m.services.shared().iter().map(Arc::as_ptr).collect();
            for s in self.services.shared() {
                if !before.contains(&Arc::as_ptr(s)) {
                    out.insert(key(&s.metadata));
                }
            }
        }
        let (was, is): (HashSet<*const Pod>, HashSet<*const Pod>) = (
            m.pods.shared().iter().map(Arc::as_ptr).collect(),
            self.pods.shared().iter().map(Arc::as_ptr).collect(),
        );
        let changed: Vec<&Pod> = self
            .pods
            .shared()
            .iter()
            .filter(|p| !was.contains(&Arc::as_ptr(p)))
            .chain(
                m.pods
                    .shared()
                    .iter()
                    .filter(|p| !is.contains(&Arc::as_ptr(p))),
            )
            .map(|p| &**p)
            .collect();
        if changed.len() > 64 {
            tracing::debug!(
                pods = changed.len(),
                "endpoints refresh: many pods changed; all of them"
            );
            return None;
        }
        if changed.is_empty() {
            return Some(out);
        }
        for s in &self.services {
            let Some(selector) = s.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
                continue;
            };
            let ns = state::namespace(&s.metadata);
            if changed.iter().any(|p| {
                state::namespace(&p.metadata) == ns
                    && Selector::labels_match(selector, p.metadata.labels.as_ref())
            }) {
                out.insert(key(&s.metadata));
            }
        }
        Some(out)
    }

    fn refresh_endpoints_only(&mut self, affected: Option<&Affected>) -> bool {
        if let Some(changed) = affected.and_then(|a| self.refresh_endpoints_in_place(a)) {
            return changed;
        }
        let mut new: Vec<Arc<Endpoints>> = Vec::new();
        // The current Endpoints by key: looking each service's up by a scan
        // made this O(services²), seconds per change at 10 000 services.
        let old_index = endpoints_index(&self.endpoints);
        let pods = ready_to_list(&self.pods);
        for svc in &self.services {
            let old = old_index.get(&ref_key(&svc.metadata)).copied();
            if let (Some(a), Some(old)) = (affected, old) {
                if !a.contains(&key(&svc.metadata)) {
                    new.push(old.clone());
                    continue;
                }
            }
            new.extend(endpoints_for(&self.config, svc, old, &pods));
        }
        let new = Collection::from_shared(new);
        let changed = !new.same(&self.endpoints);
        // An event on each Service whose ready endpoints changed.
        let changes: Vec<_> = new
            .shared()
            .iter()
            .filter_map(|e| {
                let before = old_index.get(&ref_key(&e.metadata)).copied();
                let same = before.is_some_and(|b| Arc::ptr_eq(b, e));
                (!same).then(|| (before.cloned(), e.clone()))
            })
            .collect();
        drop(old_index);
        self.endpoints_changed_events(changes);
        self.endpoints = new;
        changed
    }

    /// The refresh of a few `affected` Services that all have Endpoints
    /// already: each is replaced where it is, without looking at the
    /// others (at 10 000 Services, rebuilding the list took most of a
    /// deletion's refresh). None: a Service has none yet, so the list
    /// needs a new place: the whole refresh does it.
    fn refresh_endpoints_in_place(&mut self, affected: &Affected) -> Option<bool> {
        let pods = ready_to_list(&self.pods);
        // One pass over each list: a scan per affected Service, at 20 of
        // them over 10 000, cost more than the whole refresh.
        let wanted: HashMap<(&str, &str), usize> = affected
            .iter()
            .enumerate()
            .map(|(i, (ns, name))| ((ns.as_str(), name.as_str()), i))
            .collect();
        let mut services: Vec<Option<&Service>> = vec![None; affected.len()];
        for svc in &self.services {
            if let Some(&i) = wanted.get(&ref_key(&svc.metadata)) {
                services[i].get_or_insert(svc);
            }
        }
        let mut at: Vec<Option<usize>> = vec![None; affected.len()];
        for (pos, e) in self.endpoints.iter().enumerate() {
            if let Some(&i) = wanted.get(&ref_key(&e.metadata)) {
                at[i].get_or_insert(pos);
            }
        }
        let mut updates = Vec::new();
        for (svc, at) in services.into_iter().zip(at) {
            let Some(svc) = svc else {
                continue; // gone: its Endpoints went with it
            };
            let at = at?;
            let old = &self.endpoints.shared()[at];
            let new = endpoints_for(&self.config, svc, Some(old), &pods)?;
            if !Arc::ptr_eq(old, &new) {
                updates.push((at, old.clone(), new));
            }
        }
        drop(pods);
        drop(wanted);
        let changed = !updates.is_empty();
        let mut changes = Vec::new();
        for (at, old, new) in updates {
            self.endpoints.set_shared(at, new.clone());
            changes.push((Some(old), new));
        }
        self.endpoints_changed_events(changes);
        Some(changed)
    }

    /// Records an EndpointsChanged event on each Service whose ready
    /// endpoints differ between the (before, after) pairs (not on the
    /// `kubernetes` Service: kube-apiserver writes those).
    fn endpoints_changed_events(&mut self, changes: Vec<(Option<Arc<Endpoints>>, Arc<Endpoints>)>) {
        let now = chrono::Utc::now();
        for (before, e) in changes {
            let k = key(&e.metadata);
            if k.0 == "default" && k.1 == "kubernetes" {
                continue;
            }
            let new_list = endpoints_summary(Some(&e), usize::MAX);
            if endpoints_summary(before.as_deref(), usize::MAX) == new_list {
                continue;
            }
            self.record(
                super::events::Involved {
                    kind: "Service",
                    namespace: &k.0,
                    name: &k.1,
                },
                "Normal",
                "EndpointsChanged",
                "endpoint-controller",
                format!("Endpoints: {new_list}"),
                now,
            );
        }
    }

    pub fn endpoints_of(&self, namespace: &str, name: &str) -> Option<&Endpoints> {
        self.endpoints
            .iter()
            .find(|e| ref_key(&e.metadata) == (namespace, name))
    }

    /// Every Endpoints by (namespace, name): for callers that look up each
    /// service's, which [`Self::endpoints_of`] makes O(services²).
    pub fn endpoints_by_key(&self) -> std::collections::HashMap<(&str, &str), &Endpoints> {
        endpoints_index(&self.endpoints)
            .into_iter()
            .map(|(k, e)| (k, &**e))
            .collect()
    }

    /// [`Self::endpoints_by_key`] with the shared objects themselves.
    pub fn endpoints_index(&self) -> std::collections::HashMap<(&str, &str), &Arc<Endpoints>> {
        endpoints_index(&self.endpoints)
    }
}

/// The pods that Endpoints may list: not terminating, with an address.
fn ready_to_list(pods: &Collection<Pod>) -> super::selector::LabelIndex<'_, Pod> {
    super::selector::LabelIndex::new(
        pods.iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| state::pod_ip(p).is_some()),
    )
}

/// The Endpoints `svc` has from `pods` (its `old` ones if nothing in them
/// changed; None: it has none).
fn endpoints_for(
    config: &crate::lab::LabConfig,
    svc: &Service,
    old: Option<&Arc<Endpoints>>,
    pods: &super::selector::LabelIndex<'_, Pod>,
) -> Option<Arc<Endpoints>> {
    let svc_key = ref_key(&svc.metadata);
    let spec = svc.spec.clone().unwrap_or_default();
    if svc_key == ("default", "kubernetes") {
        return Some(keep_if_equal(
            old,
            kubernetes_endpoints(config, svc.metadata.creation_timestamp.clone()),
        ));
    }
    let Some(selector) = spec.selector.clone() else {
        // Selector-less services keep the Endpoints a user gave them.
        return old.cloned();
    };
    let sel = Selector::from_labels(&selector);
    let ns = state::namespace(&svc.metadata);
    let pods: Vec<&Pod> = pods.select(ns, &sel).collect();
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    // One subset per distinct resolved port set, as the controller groups them.
    let mut subsets: BTreeMap<PortSet, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for p in pods {
        let ports: Vec<(String, i32, String)> = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|sp| {
                let target = resolve_target_port(sp, p)?;
                Some((
                    sp.name.clone().unwrap_or_default(),
                    target,
                    sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ))
            })
            .collect();
        if ports.is_empty() {
            continue;
        }
        // The endpoints controller's rule: a pod's hostname is
        // published when its subdomain names this service.
        let pspec = p.spec.as_ref();
        let hostname = pspec
            .and_then(|s| s.hostname.clone())
            .filter(|_| pspec.and_then(|s| s.subdomain.as_ref()) == svc.metadata.name.as_ref());
        let address = EndpointAddress {
            hostname,
            ip: state::pod_ip(p).expect("filtered").to_string(),
            node_name: state::pod_node(p).map(String::from),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                name: p.metadata.name.clone(),
                namespace: Some(ns.to_string()),
                uid: p.metadata.uid.clone(),
                ..Default::default()
            }),
        };
        let entry = subsets.entry(ports).or_default();
        if state::pod_ready(p) || publish_not_ready {
            entry.0.push(address);
        } else {
            entry.1.push(address);
        }
    }
    let subsets: Vec<EndpointSubset> = subsets
        .into_iter()
        .map(|(ports, (mut ready, mut not_ready))| {
            ready.sort_by_key(|a| ip_key(&a.ip));
            not_ready.sort_by_key(|a| ip_key(&a.ip));
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: Some(
                    ports
                        .into_iter()
                        .map(|(name, port, protocol)| EndpointPort {
                            name: (!name.is_empty()).then_some(name),
                            port,
                            protocol: Some(protocol),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }
        })
        .collect();
    let mut meta = ObjectMeta {
        name: svc.metadata.name.clone(),
        namespace: Some(ns.to_string()),
        labels: svc.metadata.labels.clone(),
        creation_timestamp: old
            .and_then(|o| o.metadata.creation_timestamp.clone())
            .or_else(|| svc.metadata.creation_timestamp.clone()),
        ..Default::default()
    };
    if meta.labels.as_ref().is_some_and(|l| l.is_empty()) {
        meta.labels = None;
    }
    Some(keep_if_equal(
        old,
        Endpoints {
            metadata: meta,
            subsets: (!subsets.is_empty()).then_some(subsets),
        },
    ))
}

/// The Services (namespace, name) an endpoints refresh recomputes.
pub(super) type Affected = HashSet<(String, String)>;

/// What the last endpoints refresh computed from, kept in the state (not
/// stored, not part of its value) so that the next refresh recomputes only
/// the Services whose inputs changed: at 10 000 Services a refresh of all
/// of them took 350 ms, and a pod deletion changes a handful. Changes are
/// told by pointer (see [`Collection`]): the memo holds the objects it saw,
/// so any edit of one since makes a new object.
#[derive(Clone, Default)]
pub struct Memo(Option<Arc<MemoInput>>);

pub struct MemoInput {
    config: crate::lab::LabConfig,
    pods: Collection<Pod>,
    services: Collection<Service>,
    endpoints: Collection<Endpoints>,
    slices: Collection<k8s_openapi::api::discovery::v1::EndpointSlice>,
    /// The outputs were let go for a commit ([`Memo::release_outputs`]).
    released: bool,
}

impl Memo {
    /// The refresh's Endpoints and slices are about to be committed, which
    /// sets their resourceVersions: the memo lets go of them, so that the
    /// commit changes them in place (an object the memo shared would be
    /// copied, and both copies kept: 60 MiB after the scale lab's `up`).
    /// [`Memo::committed`] takes them back.
    pub fn release_outputs(&mut self) {
        match self.0.as_mut().and_then(Arc::get_mut) {
            Some(m) => {
                m.endpoints = Collection::default();
                m.slices = Collection::default();
                m.released = true;
            }
            None => self.0 = None,
        }
    }

    /// After the refresh's commit: if it committed and nobody else did in
    /// between (`alone`), its Endpoints and slices as committed.
    /// Otherwise, or if [`Memo::release_outputs`] was not called, the next
    /// refresh does all.
    pub fn committed(&mut self, st: &ClusterState, alone: bool) {
        match self.0.as_mut().and_then(Arc::get_mut) {
            Some(m) if alone && m.released => {
                m.endpoints = st.endpoints.clone();
                m.slices = st.endpoint_slices.clone();
                m.released = false;
            }
            _ => self.0 = None,
        }
    }
}

impl PartialEq for Memo {
    fn eq(&self, _: &Memo) -> bool {
        true
    }
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Memo")
    }
}

/// A run of upserts (a lab file's services, an `apply`) against one index
/// of the services that exist and of the clusterIPs and nodePorts they
/// hold, instead of a scan of every service per upsert: at 10 000
/// services those scans made planning a lab take 7 s (O(services²)).
/// The services are kept sorted by key when the batch ends.
pub struct ServiceBatch<'a> {
    st: &'a mut ClusterState,
    index: std::collections::HashMap<(String, String), usize>,
    cluster_ips: HashSet<Ipv4Addr>,
    node_ports: HashSet<u16>,
    unsorted: bool,
}

impl<'a> ServiceBatch<'a> {
    fn new(st: &'a mut ClusterState) -> Self {
        let index = st
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| (key(&s.metadata), i))
            .collect();
        let cluster_ips = st.services.iter().filter_map(cluster_ip).collect();
        let node_ports = st.services.iter().flat_map(node_ports).collect();
        ServiceBatch {
            st,
            index,
            cluster_ips,
            node_ports,
            unsorted: false,
        }
    }

    /// The service as it is now in the batch.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&Service> {
        let i = self.index.get(&(namespace.to_string(), name.to_string()))?;
        Some(&self.st.services[*i])
    }

    /// Creates a Service, or updates one that exists (as `kubectl apply`):
    /// defaults and validates it, keeps an existing clusterIP and nodePorts,
    /// allocates what is missing, releases nodePorts a type change drops.
    pub fn upsert(
        &mut self,
        mut svc: Service,
        now: chrono::DateTime<chrono::Utc>,
        rng: &mut impl rand::Rng,
    ) -> Result<bool, ServiceError> {
        let ns = svc
            .metadata
            .namespace
            .get_or_insert_with(|| "default".into())
            .clone();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let k = (ns.clone(), name.clone());
        let at = self.index.get(&k).copied();
        let existing = at.map(|i| self.st.services[i].clone());
        let spec = svc.spec.get_or_insert_with(ServiceSpec::default);
        let type_ = spec.type_.get_or_insert_with(|| "ClusterIP".into()).clone();
        if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&type_.as_str()) {
            return Err(invalid(
                &name,
                format!("spec.type: Unsupported value: {type_:?}: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""),
            ));
        }
        let external_name = type_ == "ExternalName";
        if external_name {
            // A CNAME in the cluster DNS, nothing in the proxy.
            let target = spec.external_name.clone().unwrap_or_default();
            if let Err(m) = crate::lab::validate::dns_subdomain(target.trim_end_matches('.')) {
                return Err(invalid(
                    &name,
                    format!("spec.externalName: Invalid value: {target:?}: {m}"),
                ));
            }
        }
        if let Err(m) = super::external_ips::validate(
            spec.external_ips.as_deref().unwrap_or_default(),
            self.st.config.pod_cidr,
            self.st.config.service_cidr,
        ) {
            return Err(invalid(&name, m));
        }
        let ports = spec.ports.get_or_insert_with(Vec::new);
        if ports.is_empty() && !external_name {
            return Err(invalid(&name, "spec.ports: Required value"));
        }
        let multi = ports.len() > 1;
        let mut seen = HashSet::new();
        for (i, p) in ports.iter_mut().enumerate() {
            let protocol = p.protocol.get_or_insert_with(|| "TCP".into()).clone();
            if !["TCP", "UDP", "SCTP"].contains(&protocol.as_str()) {
                return Err(invalid(
                    &name,
                    format!("spec.ports[{i}].protocol: Unsupported value: {protocol:?}"),
                ));
            }
            if !(1..=65535).contains(&p.port) {
                return Err(invalid(&name, format!("spec.ports[{i}].port: Invalid value: {}: must be between 1 and 65535, inclusive", p.port)));
            }
            if multi && p.name.as_deref().unwrap_or("").is_empty() {
                return Err(invalid(&name, format!("spec.ports[{i}].name: Required value: ports of a multi-port service must be named")));
            }
            if !seen.insert((p.port, protocol.clone())) {
                return Err(invalid(
                    &name,
                    format!("spec.ports[{i}]: Duplicate value: {}/{protocol}", p.port),
                ));
            }
            if p.target_port.is_none() {
                p.target_port = Some(IntOrString::Int(p.port));
            }
            if let Some(IntOrString::Int(t)) = &p.target_port {
                if !(1..=65535).contains(t) {
                    return Err(invalid(&name, format!("spec.ports[{i}].targetPort: Invalid value: {t}: must be between 1 and 65535, inclusive")));
                }
            }
        }
        let affinity = spec
            .session_affinity
            .get_or_insert_with(|| "None".into())
            .clone();
        match affinity.as_str() {
            "None" => spec.session_affinity_config = None,
            "ClientIP" => {
                let cfg = spec.session_affinity_config.get_or_insert_with(Default::default);
                let client = cfg.client_ip.get_or_insert_with(Default::default);
                let t = *client.timeout_seconds.get_or_insert(10800);
                if !(1..=86400).contains(&t) {
                    return Err(invalid(&name, format!("spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: {t}: must be greater than 0 and less than 86400")));
                }
            }
            other => {
                return Err(invalid(&name, format!("spec.sessionAffinity: Unsupported value: {other:?}: supported values: \"ClientIP\", \"None\"")))
            }
        }
        let policy = spec
            .external_traffic_policy
            .clone()
            .unwrap_or_else(|| "Cluster".into());
        if type_ == "ClusterIP" || external_name {
            spec.external_traffic_policy = None;
        } else {
            if !["Cluster", "Local"].contains(&policy.as_str()) {
                return Err(invalid(
                    &name,
                    format!("spec.externalTrafficPolicy: Unsupported value: {policy:?}"),
                ));
            }
            spec.external_traffic_policy = Some(policy);
        }
        for (i, r) in spec
            .load_balancer_source_ranges
            .iter()
            .flatten()
            .enumerate()
        {
            if r.parse::<ipnet::Ipv4Net>().is_err() {
                return Err(invalid(
                    &name,
                    format!("spec.loadBalancerSourceRanges[{i}]: Invalid value: {r:?}: must be an IPv4 CIDR such as 203.0.113.0/24"),
                ));
            }
        }
        spec.internal_traffic_policy
            .get_or_insert_with(|| "Cluster".into());
        spec.ip_families = Some(vec!["IPv4".into()]);
        spec.ip_family_policy
            .get_or_insert_with(|| "SingleStack".into());

        // clusterIP: never changes during the service's life.
        let old_ip = existing
            .as_ref()
            .and_then(|e| e.spec.as_ref()?.cluster_ip.clone());
        let wanted = spec.cluster_ip.clone().filter(|s| !s.is_empty());
        let ip = match (old_ip, wanted) {
            _ if external_name => String::new(),
            (Some(old), Some(w)) if old != w => {
                return Err(invalid(
                    &name,
                    format!(
                    "spec.clusterIPs[0]: Invalid value: {w:?}: field is immutable (it is {old})"
                ),
                ))
            }
            (Some(old), _) => old,
            (None, Some(w)) if w == "None" => w,
            (None, Some(w)) => {
                let addr: Ipv4Addr = w.parse().map_err(|_| {
                    invalid(
                        &name,
                        format!(
                            "spec.clusterIPs[0]: Invalid value: {w:?}: must be a valid IP address"
                        ),
                    )
                })?;
                if !self.st.config.service_cidr.contains(&addr) {
                    return Err(invalid(&name, format!("spec.clusterIPs[0]: Invalid value: {w:?}: provided IP is not in the valid range. The range of valid IPs is {}", self.st.config.service_cidr)));
                }
                if self.cluster_ips.contains(&addr) {
                    return Err(invalid(&name, format!("spec.clusterIPs[0]: Invalid value: {w:?}: provided IP is already allocated")));
                }
                w
            }
            (None, None) => self.allocate_cluster_ip(&name, rng)?.to_string(),
        };
        if ip.is_empty() {
            spec.cluster_ips = None;
            spec.cluster_ip = None;
        } else {
            spec.cluster_ips = Some(vec![ip.clone()]);
            spec.cluster_ip = Some(ip);
        }

        // nodePorts: kept across updates, allocated for NodePort/LoadBalancer,
        // released (cleared) when the type no longer has them.
        let wants_node_ports = type_ != "ClusterIP" && !external_name;
        let old_ports: Vec<ServicePort> = existing
            .as_ref()
            .and_then(|e| e.spec.as_ref()?.ports.clone())
            .unwrap_or_default();
        // Taken: held by another service, or by an earlier port of this one
        // (its own old nodePorts are free to it).
        let own: Vec<u16> = old_ports
            .iter()
            .filter_map(|o| o.node_port.map(|n| n as u16))
            .collect();
        let mut mine: Vec<u16> = Vec::new();
        let held = &self.node_ports;
        let taken =
            |mine: &[u16], n: u16| mine.contains(&n) || (held.contains(&n) && !own.contains(&n));
        for (i, p) in spec.ports.iter_mut().flatten().enumerate() {
            if !wants_node_ports {
                if p.node_port.is_some() && existing.is_none() {
                    return Err(invalid(&name, format!("spec.ports[{i}].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'")));
                }
                p.node_port = None;
                continue;
            }
            let keep = old_ports
                .iter()
                .find(|o| o.port == p.port && o.protocol == p.protocol)
                .and_then(|o| o.node_port);
            let port = match p.node_port.or(keep) {
                Some(n) => {
                    if !(NODE_PORT_MIN as i32..=NODE_PORT_MAX as i32).contains(&n) {
                        return Err(invalid(&name, format!("spec.ports[{i}].nodePort: Invalid value: {n}: provided port is not in the valid range. The range of valid ports is {NODE_PORT_MIN}-{NODE_PORT_MAX}")));
                    }
                    if taken(&mine, n as u16) {
                        return Err(invalid(&name, format!("spec.ports[{i}].nodePort: Invalid value: {n}: provided port is already allocated")));
                    }
                    n as u16
                }
                None => allocate_node_port(|n| taken(&mine, n), rng).ok_or_else(|| {
                    invalid(&name, "spec.ports: no free node port left in 30000-32767")
                })?,
            };
            mine.push(port);
            p.node_port = Some(port as i32);
        }

        let created = existing.is_none();
        svc.metadata.creation_timestamp = existing
            .as_ref()
            .and_then(|e| e.metadata.creation_timestamp.clone())
            .or_else(|| Some(state::time(now)));
        svc.metadata.uid = existing
            .as_ref()
            .and_then(|e| e.metadata.uid.clone())
            .or_else(|| Some(state::uid(rng)));
        // Status is the controllers' (an apply cannot set it): the
        // LoadBalancer address stays while the type does, and goes with it.
        svc.status = existing.as_ref().and_then(|e| e.status.clone());
        if type_ == "LoadBalancer" {
            svc.status.get_or_insert_with(Default::default);
        } else if let Some(st) = svc.status.as_mut() {
            st.load_balancer = None;
        }
        for o in &old_ports {
            if let Some(n) = o.node_port {
                self.node_ports.remove(&(n as u16));
            }
        }
        self.node_ports.extend(node_ports(&svc));
        self.cluster_ips.extend(cluster_ip(&svc));
        match at {
            Some(i) => self.st.services[i] = svc,
            None => {
                self.index.insert(k, self.st.services.len());
                self.st.services.push(svc);
                self.unsorted = true;
            }
        }
        Ok(created)
    }

    fn allocate_cluster_ip(
        &self,
        name: &str,
        rng: &mut impl rand::Rng,
    ) -> Result<Ipv4Addr, ServiceError> {
        let cidr = self.st.config.service_cidr;
        let used = &self.cluster_ips;
        let base = u32::from(cidr.network());
        let size = 1u32 << (32 - cidr.prefix_len());
        // Like the API server: dynamic allocation prefers the upper part of
        // the range; the lower part (here the first 16) is for static IPs
        // such as kubernetes (.1) and kube-dns (.10).
        let low = 16.min(size / 2);
        let reserved = [kubernetes_ip(cidr), dns_ip(cidr)];
        let free = |a: Ipv4Addr| !used.contains(&a) && !reserved.contains(&a);
        for _ in 0..64 {
            let a = Ipv4Addr::from(base + rng.random_range(low..size - 1));
            if free(a) {
                return Ok(a);
            }
        }
        (1..size - 1)
            .map(|o| Ipv4Addr::from(base + o))
            .find(|a| free(*a))
            .ok_or_else(|| {
                invalid(
                    name,
                    format!(
                        "spec.clusterIPs: Internal error: no free IP in the service range {cidr}"
                    ),
                )
            })
    }
}

impl Drop for ServiceBatch<'_> {
    fn drop(&mut self) {
        if self.unsorted {
            self.st
                .services
                .sort_by(|a, b| ref_key(&a.metadata).cmp(&ref_key(&b.metadata)));
        }
    }
}

fn node_ports(s: &Service) -> impl Iterator<Item = u16> + '_ {
    s.spec
        .iter()
        .flat_map(|sp| sp.ports.iter().flatten())
        .filter_map(|p| p.node_port.map(|n| n as u16))
}

/// The resolved ports of a subset: (name, target port, protocol).
type PortSet = Vec<(String, i32, String)>;

fn ip_key(ip: &str) -> u32 {
    ip.parse::<Ipv4Addr>().map(u32::from).unwrap_or(0)
}

fn allocate_node_port(taken: impl Fn(u16) -> bool, rng: &mut impl rand::Rng) -> Option<u16> {
    for _ in 0..64 {
        let p = rng.random_range(NODE_PORT_MIN..=NODE_PORT_MAX);
        if !taken(p) {
            return Some(p);
        }
    }
    (NODE_PORT_MIN..=NODE_PORT_MAX).find(|p| !taken(*p))
}

/// A service port's targetPort on one pod: a number as is, a name looked up
/// in the pod's containerPorts (same protocol); None when the pod lacks it.
pub fn resolve_target_port(sp: &ServicePort, pod: &Pod) -> Option<i32> {
    match sp.target_port.as_ref() {
        None => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let protocol = sp.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|cp| {
                    cp.name.as_deref() == Some(name.as_str())
                        && cp.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|cp| cp.container_port)
        }
    }
}

/// `kubectl describe`/`get ep` form: `10.244.1.2:80,10.244.2.2:80`.
pub fn endpoints_summary(e: Option<&Endpoints>, limit: usize) -> String {
    let mut list = Vec::new();
    for s in e.and_then(|e| e.subsets.as_ref()).into_iter().flatten() {
        for a in s.addresses.iter().flatten() {
            for p in s.ports.iter().flatten() {
                list.push(format!("{}:{}", a.ip, p.port));
            }
        }
    }
    if list.is_empty() {
        return "<none>".into();
    }
    if list.len() > limit {
        let more = list.len() - limit;
        list.truncate(limit);
        return format!("{} + {more} more...", list.join(","));
    }
    list.join(",")
}

/// Where the lab's API listens inside the lab, for pods: the dc
/// namespace's LAN address (every node's LAN neighbour; the dc namespace
/// routes each node's pod subnet back to it), kube-apiserver's port.
pub fn api_endpoint(config: &crate::lab::LabConfig) -> std::net::SocketAddrV4 {
    std::net::SocketAddrV4::new(super::topology::dc_address(config).addr(), API_PORT)
}

/// kube-apiserver's secure port.
pub const API_PORT: u16 = 6443;

/// The `kubernetes` Service's Endpoints, as kube-apiserver writes them
/// itself (marked so that the mirroring controller leaves them alone: it
/// writes the EndpointSlice too).
fn kubernetes_endpoints(
    config: &crate::lab::LabConfig,
    created: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
) -> Endpoints {
    let at = api_endpoint(config);
    Endpoints {
        metadata: ObjectMeta {
            name: Some("kubernetes".into()),
            namespace: Some("default".into()),
            labels: Some(
                [(
                    super::endpointslices::SKIP_MIRROR.to_string(),
                    "true".to_string(),
                )]
                .into(),
            ),
            creation_timestamp: created,
            ..Default::default()
        },
        subsets: Some(vec![EndpointSubset {
            addresses: Some(vec![EndpointAddress {
                ip: at.ip().to_string(),
                ..Default::default()
            }]),
            not_ready_addresses: None,
            ports: Some(vec![EndpointPort {
                name: Some("https".into()),
                port: at.port() as i32,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
        }]),
    }
}

/// The `kubernetes` Service every cluster has in `default`.
pub fn kubernetes_service(service_cidr: Ipv4Net) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some("kubernetes".into()),
            namespace: Some("default".into()),
            labels: Some(
                [
                    ("component".to_string(), "apiserver".to_string()),
                    ("provider".to_string(), "kubernetes".to_string()),
                ]
                .into(),
            ),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(kubernetes_ip(service_cidr).to_string()),
            ports: Some(vec![ServicePort {
                name: Some("https".into()),
                port: 443,
                protocol: Some("TCP".into()),
                target_port: Some(IntOrString::Int(6443)),
                ..Default::default()
            }]),
            type_: Some("ClusterIP".into()),
            session_affinity: Some("None".into()),
            ..Default::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::HostInfo;
    use rand::SeedableRng;

    fn lab() -> ClusterState {
        let spec = crate::lab::load_str(
            std::path::Path::new("t.yaml"),
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: my-nginx\nspec:\n  selector:\n    matchLabels:\n      run: my-nginx\n  replicas: 2\n  template:\n    metadata:\n      labels:\n        run: my-nginx\n    spec:\n      containers:\n      - name: my-nginx\n        image: nginx\n        ports:\n        - containerPort: 80\n          name: http\n",
            &Default::default(),
        )
        .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut s =
            ClusterState::plan(&spec, &HostInfo::default(), chrono::Utc::now(), &mut rng).unwrap();
        for mut p in &mut s.pods {
            p.status.as_mut().unwrap().conditions =
                Some(vec![k8s_openapi::api::core::v1::PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]);
        }
        s
    }

    fn svc(yaml: &str) -> Service {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    const MY_NGINX: &str = "metadata:\n  name: my-nginx\nspec:\n  selector:\n    run: my-nginx\n  ports:\n  - port: 80\n";

    #[test]
    fn a_refresh_of_what_changed_gives_what_a_full_one_gives() {
        let mut s = lab();
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let now = chrono::Utc::now();
        for y in [
            MY_NGINX,
            "metadata:\n  name: other\nspec:\n  selector:\n    run: other\n  ports:\n  - port: 81\n",
            "metadata:\n  name: manual\nspec:\n  ports:\n  - port: 82\n",
        ] {
            s.upsert_service(svc(y), now, &mut rng).unwrap();
        }
        s.refresh_endpoints();
        let full = |st: &ClusterState| {
            let mut f = st.clone();
            f.endpoints_memo = Memo::default();
            f.refresh_endpoints();
            (f.endpoints, f.endpoint_slices)
        };
        let check = |st: &mut ClusterState, what: &str| {
            st.refresh_endpoints();
            let (e, sl) = full(st);
            assert_eq!(st.endpoints, e, "{what}: endpoints");
            assert_eq!(st.endpoint_slices, sl, "{what}: slices");
        };
        // Nothing changed: the very same objects.
        let before = s.clone();
        assert!(!s.refresh_endpoints());
        assert!(s.endpoints.same(&before.endpoints));
        assert!(s.endpoint_slices.same(&before.endpoint_slices));
        // A pod goes away: terminating, then gone.
        s.pods[0].metadata.deletion_timestamp = Some(state::time(now));
        check(&mut s, "terminating");
        let gone = s.pods[0].metadata.name.clone();
        s.pods.retain(|p| p.metadata.name != gone);
        check(&mut s, "removed");
        // A pod's labels move it from one Service to the other.
        s.pods[0]
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("run".into(), "other".into());
        check(&mut s, "relabelled");
        assert_eq!(
            endpoints_summary(s.endpoints_of("default", "other"), 9)
                .matches(':')
                .count(),
            1
        );
        // Not ready any more.
        s.pods[0].status.as_mut().unwrap().conditions = None;
        check(&mut s, "not ready");
        // A Service's selector changes; one goes away.
        let mut changed = s.service("default", "other").unwrap().clone();
        changed.spec.as_mut().unwrap().selector =
            Some([("run".to_string(), "my-nginx".to_string())].into());
        s.upsert_service(changed, now, &mut rng).unwrap();
        check(&mut s, "selector");
        s.delete_service("default", "my-nginx").unwrap();
        check(&mut s, "service deleted");
        assert!(s.endpoints_of("default", "my-nginx").is_none());
    }

    #[test]
    fn a_batch_allocates_unique_addresses_and_ports_and_sorts() {
        let mut s = lab();
        // A /23 has 510 usable addresses: 500 services leave random draws
        // colliding often, which the batch must see within itself.
        s.config.service_cidr = "10.0.0.0/23".parse().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let now = chrono::Utc::now();
        let mut batch = s.service_batch();
        for i in (0..500).rev() {
            let y = format!(
                "metadata:\n  name: s-{i:03}\nspec:\n  type: NodePort\n  ports:\n  - port: 80\n"
            );
            assert!(batch.upsert(svc(&y), now, &mut rng).unwrap());
        }
        // An update within the batch keeps its address and port.
        let before = batch.get("default", "s-007").unwrap().clone();
        let y = "metadata:\n  name: s-007\nspec:\n  type: NodePort\n  ports:\n  - port: 80\n";
        assert!(!batch.upsert(svc(y), now, &mut rng).unwrap());
        assert_eq!(batch.get("default", "s-007").unwrap().spec, before.spec);
        // An address taken earlier in the same batch is refused.
        let taken = cluster_ip(batch.get("default", "s-100").unwrap()).unwrap();
        let y = format!(
            "metadata:\n  name: clash\nspec:\n  clusterIP: {taken}\n  ports:\n  - port: 80\n"
        );
        let err = batch.upsert(svc(&y), now, &mut rng).unwrap_err();
        assert!(err.to_string().contains("already allocated"), "{err}");
        drop(batch);

        let ips: HashSet<Ipv4Addr> = s.services.iter().filter_map(cluster_ip).collect();
        assert_eq!(ips.len(), s.services.len(), "clusterIPs are unique");
        let ports: Vec<u16> = s.services.iter().flat_map(node_ports).collect();
        assert_eq!(ports.len(), 500);
        assert_eq!(
            ports.iter().collect::<HashSet<_>>().len(),
            500,
            "nodePorts are unique"
        );
        let keys: Vec<_> = s.services.iter().map(|x| ref_key(&x.metadata)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted by key");
        assert!(s.service("default", "s-000").is_some());
    }

    #[test]
    fn cluster_ip_is_allocated_in_range_and_kept() {
        let mut s = lab();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert!(s
            .upsert_service(svc(MY_NGINX), chrono::Utc::now(), &mut rng)
            .unwrap());
        let ip = cluster_ip(s.service("default", "my-nginx").unwrap()).unwrap();
        assert!(s.config.service_cidr.contains(&ip));
        assert_ne!(ip, kubernetes_ip(s.config.service_cidr));
        // An update keeps it, and a different one is refused.
        assert!(!s
            .upsert_service(svc(MY_NGINX), chrono::Utc::now(), &mut rng)
            .unwrap());
        assert_eq!(
            cluster_ip(s.service("default", "my-nginx").unwrap()),
            Some(ip)
        );
        let other = if ip.to_string() == "10.0.0.99" {
            "10.0.0.98"
        } else {
            "10.0.0.99"
        };
        let err = s
            .upsert_service(
                svc(&format!("{MY_NGINX}  clusterIP: {other}\n")),
                chrono::Utc::now(),
                &mut rng,
            )
            .unwrap_err();
        assert!(err.to_string().contains("immutable"), "{err}");
    }

    fn first_node_port(s: &ClusterState) -> Option<i32> {
        s.service("default", "my-nginx")?
            .spec
            .as_ref()?
            .ports
            .as_ref()?[0]
            .node_port
    }

    #[test]
    fn node_ports_allocated_validated_and_released() {
        let mut s = lab();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let np = format!("{MY_NGINX}  type: NodePort\n");
        s.upsert_service(svc(&np), chrono::Utc::now(), &mut rng)
            .unwrap();
        let port = first_node_port(&s).unwrap();
        assert!((30000..=32767).contains(&port));
        // Collision with another service's explicit nodePort.
        let clash = format!("metadata:\n  name: b\nspec:\n  type: NodePort\n  ports:\n  - port: 80\n    nodePort: {port}\n");
        assert!(s
            .upsert_service(svc(&clash), chrono::Utc::now(), &mut rng)
            .unwrap_err()
            .to_string()
            .contains("already allocated"));
        let out = "metadata:\n  name: c\nspec:\n  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 80\n";
        assert!(s
            .upsert_service(svc(out), chrono::Utc::now(), &mut rng)
            .unwrap_err()
            .to_string()
            .contains("valid range"));
        // Back to ClusterIP releases it; the port can then be taken explicitly.
        s.upsert_service(svc(MY_NGINX), chrono::Utc::now(), &mut rng)
            .unwrap();
        assert!(first_node_port(&s).is_none());
        s.upsert_service(svc(&clash), chrono::Utc::now(), &mut rng)
            .unwrap();
    }

    #[test]
    fn endpoints_follow_ready_pods_and_named_ports() {
        let mut s = lab();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let named = "metadata:\n  name: web\nspec:\n  selector:\n    run: my-nginx\n  ports:\n  - name: web\n    port: 8080\n    targetPort: http\n";
        s.upsert_service(svc(named), chrono::Utc::now(), &mut rng)
            .unwrap();
        assert!(s.refresh_endpoints());
        let e = s.endpoints_of("default", "web").unwrap();
        assert_eq!(endpoints_summary(Some(e), 3), "10.244.1.2:80,10.244.2.2:80");
        assert!(!s.refresh_endpoints(), "no change the second time");
        // A pod that is not ready leaves the addresses.
        s.pods[0].status.as_mut().unwrap().conditions = None;
        assert!(s.refresh_endpoints());
        let e = s.endpoints_of("default", "web").unwrap();
        assert_eq!(endpoints_summary(Some(e), 3).matches(':').count(), 1);
        assert_eq!(
            e.subsets.as_ref().unwrap()[0]
                .not_ready_addresses
                .as_ref()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn publish_not_ready_addresses() {
        let mut s = lab();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        s.pods[0].status.as_mut().unwrap().conditions = None; // not ready
        let svc_yaml = "metadata:\n  name: all\nspec:\n  publishNotReadyAddresses: true\n  selector:\n    run: my-nginx\n  ports:\n  - port: 80\n";
        s.upsert_service(svc(svc_yaml), chrono::Utc::now(), &mut rng)
            .unwrap();
        s.refresh_endpoints();
        assert_eq!(
            endpoints_summary(s.endpoints_of("default", "all"), 9)
                .matches(':')
                .count(),
            2
        );
        assert!(s
            .events
            .iter()
            .any(|e| e.reason.as_deref() == Some("EndpointsChanged")));
    }

    #[test]
    fn multi_port_needs_names() {
        let mut s = lab();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let bad = "metadata:\n  name: m\nspec:\n  ports:\n  - port: 80\n  - port: 443\n";
        assert!(s
            .upsert_service(svc(bad), chrono::Utc::now(), &mut rng)
            .unwrap_err()
            .to_string()
            .contains("must be named"));
        let ok = "metadata:\n  name: m\nspec:\n  ports:\n  - name: dns\n    port: 53\n    protocol: UDP\n  - name: dns-tcp\n    port: 53\n    protocol: TCP\n";
        s.upsert_service(svc(ok), chrono::Utc::now(), &mut rng)
            .unwrap();
    }
}
