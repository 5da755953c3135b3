//! The cluster's DNS records, after the Kubernetes DNS-Based Service
//! Discovery specification (schema 1.1.0), built from the object store
//! (pure) and answered from memory.
//!
//! * `<svc>.<ns>.svc.cluster.local` A: the clusterIP; for headless
//!   services one A per ready endpoint (NXDOMAIN while none is ready);
//!   for ExternalName services a CNAME.
//! * `_<port>._<proto>.<svc>.<ns>.svc.cluster.local` SRV for named ports
//!   (per endpoint for headless services, whose targets are
//!   `<hostname>.<svc>…` or, without a hostname, `<a-b-c-d>.<svc>…`).
//! * PTR for cluster IPs and for headless endpoints (to `<hostname>.<svc>…`
//!   or `<a-b-c-d>.<svc>…`, the name their SRV records give them).
//! * `<a-b-c-d>.<ns>.pod.cluster.local` A for the pods that exist.
//! * `dns-version.cluster.local` TXT `1.1.0`.
//!
//! A name that exists without records of the asked type gets NODATA
//! (NOERROR, no answer, the SOA); a name that does not exist gets
//! NXDOMAIN; both carry the zone's SOA for negative caching.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use hickory_proto::rr::rdata::{A, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use ipnet::Ipv4Net;

use crate::cluster::services::cluster_ip;
use crate::cluster::{dns::CLUSTER_DOMAIN, state, ClusterState};

/// Records are short-lived, as CoreDNS's `kubernetes` plugin makes them.
pub const TTL: u32 = 5;

/// What the zone says about one question.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Answers (possibly a CNAME chain) and additional records.
    Records {
        answers: Vec<Record>,
        additionals: Vec<Record>,
    },
    /// The name exists, not with this type.
    NoData,
    NxDomain,
    /// Not a name this server is authoritative for.
    NotOurs,
}

/// Every record of the cluster, by owner name.
#[derive(Debug, Clone)]
pub struct Zone {
    origin: LowerName,
    records: HashMap<LowerName, Vec<Record>>,
    /// Names that exist: owners of records and their ancestors up to the
    /// origin (empty non-terminals such as `svc.cluster.local`).
    existing: HashSet<LowerName>,
    /// Reverse zones this server answers for (service and pod CIDRs).
    reverse: Vec<Ipv4Net>,
    soa: Record,
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap_or_else(|_| Name::root())
}

fn dashed(ip: Ipv4Addr) -> String {
    ip.to_string().replace('.', "-")
}

/// `d.c.b.a.in-addr.arpa.`
pub fn reverse_name(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
}

fn parse_reverse(n: &LowerName) -> Option<Ipv4Addr> {
    let text = n.to_string().to_ascii_lowercase();
    let rest = text.strip_suffix(".in-addr.arpa.")?;
    let parts: Vec<u8> = rest
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    (parts.len() == 4).then(|| Ipv4Addr::new(parts[3], parts[2], parts[1], parts[0]))
}

impl Zone {
    pub fn empty(service_cidr: Ipv4Net, pod_cidr: Ipv4Net) -> Zone {
        let origin = name(&format!("{CLUSTER_DOMAIN}."));
        let soa = Record::from_rdata(
            origin.clone(),
            TTL,
            RData::SOA(SOA::new(
                name(&format!("ns.dns.{CLUSTER_DOMAIN}.")),
                name(&format!("hostmaster.{CLUSTER_DOMAIN}.")),
                1,
                7200,
                1800,
                86400,
                TTL,
            )),
        );
        let mut z = Zone {
            origin: LowerName::from(&origin),
            records: HashMap::new(),
            existing: HashSet::new(),
            reverse: vec![service_cidr, pod_cidr],
            soa: soa.clone(),
        };
        z.add(soa);
        z.add(Record::from_rdata(
            origin,
            TTL,
            RData::NS(NS(name(&format!("ns.dns.{CLUSTER_DOMAIN}.")))),
        ));
        z
    }

    /// The records of the cluster as the store describes it.
    pub fn build(st: &ClusterState) -> Zone {
        let mut z = Zone::empty(st.config.service_cidr, st.config.pod_cidr);
        let d = CLUSTER_DOMAIN;
        z.add(Record::from_rdata(
            name(&format!("dns-version.{d}.")),
            TTL,
            RData::TXT(TXT::new(vec!["1.1.0".into()])),
        ));
        for svc in &st.services {
            let Some(spec) = &svc.spec else { continue };
            let ns = state::namespace(&svc.metadata);
            let svc_name = svc.metadata.name.clone().unwrap_or_default();
            let fqdn = format!("{svc_name}.{ns}.svc.{d}.");
            let owner = name(&fqdn);
            if spec.type_.as_deref() == Some("ExternalName") {
                let target = spec.external_name.clone().unwrap_or_default();
                let target = if target.ends_with('.') {
                    target
                } else {
                    format!("{target}.")
                };
                z.add(Record::from_rdata(
                    owner,
                    TTL,
                    RData::CNAME(CNAME(name(&target))),
                ));
                continue;
            }
            let named_ports: Vec<(String, String, u16)> = spec
                .ports
                .iter()
                .flatten()
                .filter_map(|p| {
                    let n = p.name.clone().filter(|n| !n.is_empty())?;
                    let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
                    Some((n, proto.to_ascii_lowercase(), p.port as u16))
                })
                .collect();
            if let Some(ip) = cluster_ip(svc) {
                z.add(Record::from_rdata(owner.clone(), TTL, RData::A(A(ip))));
                z.add(Record::from_rdata(
                    name(&reverse_name(ip)),
                    TTL,
                    RData::PTR(PTR(owner.clone())),
                ));
                for (port_name, proto, port) in &named_ports {
                    z.add(Record::from_rdata(
                        name(&format!("_{port_name}._{proto}.{fqdn}")),
                        TTL,
                        RData::SRV(SRV::new(0, 100, *port, owner.clone())),
                    ));
                }
                continue;
            }
            if spec.cluster_ip.as_deref() != Some("None") {
                continue;
            }
            // Headless: the ready endpoints themselves.
            let Some(eps) = st.endpoints_of(ns, &svc_name) else {
                continue;
            };
            let mut seen = HashSet::new();
            for subset in eps.subsets.iter().flatten() {
                let addresses: Vec<_> = subset.addresses.iter().flatten().collect();
                let weight = (100 / addresses.len().max(1)) as u16;
                for a in addresses {
                    let Ok(ip) = a.ip.parse::<Ipv4Addr>() else {
                        continue;
                    };
                    let host = a.hostname.clone().unwrap_or_else(|| dashed(ip));
                    let host_fqdn = name(&format!("{host}.{fqdn}"));
                    if seen.insert(ip) {
                        z.add(Record::from_rdata(owner.clone(), TTL, RData::A(A(ip))));
                        z.add(Record::from_rdata(host_fqdn.clone(), TTL, RData::A(A(ip))));
                        // The endpoint's name, its hostname or, as CoreDNS
                        // answers, the system-assigned dashed address.
                        z.add(Record::from_rdata(
                            name(&reverse_name(ip)),
                            TTL,
                            RData::PTR(PTR(host_fqdn.clone())),
                        ));
                    }
                    for p in subset.ports.iter().flatten() {
                        let Some(port_name) = p.name.clone().filter(|n| !n.is_empty()) else {
                            continue;
                        };
                        let proto = p
                            .protocol
                            .clone()
                            .unwrap_or_else(|| "TCP".into())
                            .to_ascii_lowercase();
                        // The SRV port is the service's port of that name.
                        let port = named_ports
                            .iter()
                            .find(|(n, pr, _)| *n == port_name && *pr == proto)
                            .map(|x| x.2)
                            .unwrap_or(p.port as u16);
                        z.add(Record::from_rdata(
                            name(&format!("_{port_name}._{proto}.{fqdn}")),
                            TTL,
                            RData::SRV(SRV::new(0, weight, port, host_fqdn.clone())),
                        ));
                    }
                }
            }
        }
        for pod in &st.pods {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let Some(ip) = state::pod_ip(pod) else {
                continue;
            };
            let ns = state::namespace(&pod.metadata);
            z.add(Record::from_rdata(
                name(&format!("{}.{ns}.pod.{d}.", dashed(ip))),
                TTL,
                RData::A(A(ip)),
            ));
        }
        z
    }

    #[cfg(test)]
    pub(crate) fn add_for_test(&mut self, r: Record) {
        self.add(r)
    }

    fn add(&mut self, r: Record) {
        let owner = LowerName::from(&r.name);
        // Every ancestor inside the zone exists too.
        let mut n: Name = r.name.clone();
        loop {
            let l = LowerName::from(&n);
            if !self.existing.insert(l.clone()) || l == self.origin || n.is_root() {
                break;
            }
            n = n.base_name();
        }
        let list = self.records.entry(owner).or_default();
        if !list.contains(&r) {
            // Most names have one record: a Vec's first growth would make
            // room for four (about 1 KiB each name at 10 000 services).
            list.reserve_exact(1);
            list.push(r);
        }
    }

    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// Whether `n` is in the cluster domain or one of its reverse zones.
    pub fn is_ours(&self, n: &LowerName) -> bool {
        if self.origin.zone_of(n) {
            return true;
        }
        match parse_reverse(n) {
            Some(ip) => self.reverse.iter().any(|c| c.contains(&ip)),
            None => false,
        }
    }

    /// The answer to one question.
    pub fn lookup(&self, qname: &LowerName, qtype: RecordType) -> Answer {
        if !self.is_ours(qname) {
            return Answer::NotOurs;
        }
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        let mut current = qname.clone();
        // Follow CNAMEs inside the zone (at most a few hops).
        for _ in 0..8 {
            let Some(records) = self.records.get(&current) else {
                break;
            };
            let matching: Vec<&Record> = records
                .iter()
                .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
                .collect();
            if !matching.is_empty() {
                answers.extend(matching.into_iter().cloned());
                break;
            }
            let Some(cname) = records
                .iter()
                .find(|r| r.record_type() == RecordType::CNAME)
            else {
                break;
            };
            answers.push(cname.clone());
            let RData::CNAME(CNAME(target)) = &cname.data else {
                break;
            };
            current = LowerName::from(target);
            if !self.origin.zone_of(&current) {
                break; // the client's resolver goes on from here
            }
        }
        if answers.is_empty() {
            return if self.existing.contains(qname) {
                Answer::NoData
            } else {
                Answer::NxDomain
            };
        }
        // SRV targets' addresses, as CoreDNS adds them.
        for r in &answers {
            if let RData::SRV(srv) = &r.data {
                if let Some(rs) = self.records.get(&LowerName::from(&srv.target)) {
                    additionals.extend(
                        rs.iter()
                            .filter(|x| x.record_type() == RecordType::A)
                            .cloned(),
                    );
                }
            }
        }
        Answer::Records {
            answers,
            additionals,
        }
    }
}

/// What [`Zone::build`] reads of a state: its Services, the Endpoints of
/// the headless ones, and the addresses of the pods. A state whose inputs
/// are those of the last zone makes the same zone, and is not built again:
/// most commits change statuses only, and a zone of 10 000 Services took
/// tens of ms of a core at each.
pub struct Inputs {
    services: crate::cluster::Collection<k8s_openapi::api::core::v1::Service>,
    headless: Vec<std::sync::Arc<k8s_openapi::api::core::v1::Endpoints>>,
    pods: Vec<(Ipv4Addr, String)>,
}

impl Inputs {
    pub fn of(st: &ClusterState) -> Inputs {
        let headless: HashSet<(&str, &str)> = st
            .services
            .iter()
            .filter(|s| {
                s.spec
                    .as_ref()
                    .is_some_and(|p| p.cluster_ip.as_deref() == Some("None"))
            })
            .map(|s| {
                (
                    state::namespace(&s.metadata),
                    s.metadata.name.as_deref().unwrap_or_default(),
                )
            })
            .collect();
        Inputs {
            services: st.services.clone(),
            headless: st
                .endpoints
                .shared()
                .iter()
                .filter(|e| {
                    headless.contains(&(
                        state::namespace(&e.metadata),
                        e.metadata.name.as_deref().unwrap_or_default(),
                    ))
                })
                .cloned()
                .collect(),
            pods: st
                .pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter_map(|p| {
                    Some((state::pod_ip(p)?, state::namespace(&p.metadata).to_string()))
                })
                .collect(),
        }
    }

    /// Whether a zone built from `self` would be the one built from `other`.
    pub fn same(&self, other: &Inputs) -> bool {
        self.services.same(&other.services)
            && self.headless.len() == other.headless.len()
            && self
                .headless
                .iter()
                .zip(&other.headless)
                .all(|(a, b)| std::sync::Arc::ptr_eq(a, b))
            && self.pods == other.pods
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::HostInfo;
    use rand::SeedableRng;

    const LAB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: my-nginx
spec:
  selector:
    matchLabels:
      run: my-nginx
  replicas: 2
  template:
    metadata:
      labels:
        run: my-nginx
    spec:
      containers:
      - name: my-nginx
        image: nginx
        ports:
        - containerPort: 80
          name: http
---
apiVersion: v1
kind: Service
metadata:
  name: my-nginx
spec:
  selector:
    run: my-nginx
  ports:
  - name: http
    port: 80
    targetPort: http
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector:
    run: web
  ports:
  - name: http
    port: 8080
    targetPort: 80
---
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  labels:
    run: web
spec:
  hostname: web-0
  subdomain: web
  containers:
  - name: nginx
    image: nginx
    ports:
    - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: search
spec:
  type: ExternalName
  externalName: search.example.org
---
apiVersion: v1
kind: Service
metadata:
  name: nginx-headless
spec:
  clusterIP: None
  selector:
    run: my-nginx
  ports:
  - name: http
    port: 80
"#;

    fn cluster(ready: bool) -> ClusterState {
        let spec =
            crate::lab::load_str(std::path::Path::new("t.yaml"), LAB, &Default::default()).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut s =
            ClusterState::plan(&spec, &HostInfo::default(), chrono::Utc::now(), &mut rng).unwrap();
        for mut p in &mut s.pods {
            crate::controller::pods::set_ready(&mut p, ready);
        }
        s.refresh_endpoints();
        s
    }

    fn q(z: &Zone, n: &str, t: RecordType) -> Answer {
        z.lookup(&LowerName::from(Name::from_ascii(n).unwrap()), t)
    }

    fn rdata(a: &Answer) -> Vec<String> {
        match a {
            Answer::Records { answers, .. } => answers.iter().map(|r| r.data.to_string()).collect(),
            other => vec![format!("{other:?}")],
        }
    }

    #[test]
    fn a_zone_is_built_again_only_when_its_inputs_change() {
        let st = cluster(false);
        let before = Inputs::of(&st);
        assert!(Inputs::of(&st.clone()).same(&before));
        // A status that no headless Service's endpoints show yet.
        let mut s = st.clone();
        for mut p in &mut s.pods {
            crate::controller::pods::set_ready(&mut p, true);
        }
        assert!(Inputs::of(&s).same(&before));
        // The endpoints follow: the headless ones name the pods now.
        s.refresh_endpoints();
        assert!(!Inputs::of(&s).same(&before));
        // A pod going away takes its A record along.
        let mut s = st.clone();
        s.pods[0].metadata.deletion_timestamp =
            Some(crate::cluster::state::time(chrono::Utc::now()));
        assert!(!Inputs::of(&s).same(&before));
        // A Service changed.
        let mut s = st.clone();
        s.services[0].metadata.labels = Some([("a".to_string(), "b".to_string())].into());
        assert!(!Inputs::of(&s).same(&before));
    }

    #[test]
    fn cluster_ip_services() {
        let st = cluster(true);
        let z = Zone::build(&st);
        let ip = cluster_ip(
            st.services
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some("my-nginx"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            rdata(&q(&z, "my-nginx.default.svc.cluster.local.", RecordType::A)),
            vec![ip.to_string()]
        );
        // Case does not matter.
        assert_eq!(
            rdata(&q(&z, "My-Nginx.Default.SVC.cluster.local.", RecordType::A)),
            vec![ip.to_string()]
        );
        assert_eq!(
            q(&z, "my-nginx.default.svc.cluster.local.", RecordType::AAAA),
            Answer::NoData
        );
        assert_eq!(
            q(&z, "nope.default.svc.cluster.local.", RecordType::A),
            Answer::NxDomain
        );
        // Empty non-terminals exist.
        assert_eq!(
            q(&z, "default.svc.cluster.local.", RecordType::A),
            Answer::NoData
        );
        assert_eq!(q(&z, "svc.cluster.local.", RecordType::A), Answer::NoData);
        assert_eq!(
            rdata(&q(
                &z,
                "_http._tcp.my-nginx.default.svc.cluster.local.",
                RecordType::SRV
            )),
            vec!["0 100 80 my-nginx.default.svc.cluster.local.".to_string()]
        );
        assert_eq!(
            rdata(&q(&z, &reverse_name(ip), RecordType::PTR)),
            vec!["my-nginx.default.svc.cluster.local.".to_string()]
        );
        assert_eq!(
            rdata(&q(
                &z,
                "kube-dns.kube-system.svc.cluster.local.",
                RecordType::A
            )),
            vec!["10.0.0.10".to_string()]
        );
        assert_eq!(
            rdata(&q(
                &z,
                "kubernetes.default.svc.cluster.local.",
                RecordType::A
            )),
            vec!["10.0.0.1".to_string()]
        );
        assert_eq!(
            rdata(&q(&z, "dns-version.cluster.local.", RecordType::TXT)),
            vec!["1.1.0".to_string()]
        );
        assert_eq!(q(&z, "example.org.", RecordType::A), Answer::NotOurs);
        assert_eq!(
            q(&z, "1.0.0.127.in-addr.arpa.", RecordType::PTR),
            Answer::NotOurs
        );
        assert_eq!(
            q(&z, "99.99.0.10.in-addr.arpa.", RecordType::PTR),
            Answer::NxDomain
        );
        assert!(matches!(
            q(&z, "cluster.local.", RecordType::SOA),
            Answer::Records { .. }
        ));
    }

    #[test]
    fn headless_external_name_and_pods() {
        let st = cluster(true);
        let z = Zone::build(&st);
        let web0 = st.pod("default", "web-0").unwrap();
        let ip = state::pod_ip(web0).unwrap();
        assert_eq!(
            rdata(&q(&z, "web.default.svc.cluster.local.", RecordType::A)),
            vec![ip.to_string()]
        );
        assert_eq!(
            rdata(&q(
                &z,
                "web-0.web.default.svc.cluster.local.",
                RecordType::A
            )),
            vec![ip.to_string()]
        );
        assert_eq!(
            rdata(&q(
                &z,
                "_http._tcp.web.default.svc.cluster.local.",
                RecordType::SRV
            )),
            vec!["0 100 8080 web-0.web.default.svc.cluster.local.".to_string()]
        );
        assert_eq!(
            rdata(&q(&z, &reverse_name(ip), RecordType::PTR)),
            vec!["web-0.web.default.svc.cluster.local.".to_string()]
        );
        assert_eq!(
            rdata(&q(&z, "search.default.svc.cluster.local.", RecordType::A)),
            vec!["search.example.org.".to_string()]
        );
        let dashed = ip.to_string().replace('.', "-");
        assert_eq!(
            rdata(&q(
                &z,
                &format!("{dashed}.default.pod.cluster.local."),
                RecordType::A
            )),
            vec![ip.to_string()]
        );
        assert_eq!(
            q(&z, "10-9-9-9.default.pod.cluster.local.", RecordType::A),
            Answer::NxDomain
        );
        // An endpoint without a hostname is named by its address, in its
        // SRV record and its PTR alike (as CoreDNS answers).
        let nginx = st
            .pods
            .iter()
            .find(|p| {
                p.metadata
                    .name
                    .as_deref()
                    .unwrap_or("")
                    .starts_with("my-nginx")
            })
            .unwrap();
        let ip = state::pod_ip(nginx).unwrap();
        let dashed_name = format!(
            "{}.nginx-headless.default.svc.cluster.local.",
            ip.to_string().replace('.', "-")
        );
        assert_eq!(
            rdata(&q(&z, &reverse_name(ip), RecordType::PTR)),
            vec![dashed_name.clone()]
        );
        assert!(rdata(&q(
            &z,
            "_http._tcp.nginx-headless.default.svc.cluster.local.",
            RecordType::SRV
        ))
        .iter()
        .any(|r| r.ends_with(&dashed_name)));
        // No ready endpoint: the headless name does not exist.
        let z = Zone::build(&cluster(false));
        assert_eq!(
            q(&z, "web.default.svc.cluster.local.", RecordType::A),
            Answer::NxDomain
        );
    }
}
