//! LoadBalancer Services, the way MetalLB does them on bare metal: the
//! controller gives each one an address from the lab's pool (or its
//! `spec.loadBalancerIP`) and writes it to `status.loadBalancer.ingress`;
//! a speaker node announces the address on the public network (layer 2:
//! it answers ARP for it), and the proxy rules on every node DNAT it to
//! the endpoints like any external IP. Pure: the controller applies
//! [`announcements`] with `net::public::announce`.
//!
//! Until an address is allocated (the controller's next step, or never
//! when the pool is exhausted) `get svc` shows `<pending>`.

use super::events::Involved;
use super::services::service_type;
use super::state::{namespace, ClusterState};
use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, Service};
use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;

/// The addresses a service's status holds.
pub fn ingress_ips(svc: &Service) -> Vec<Ipv4Addr> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}

fn requested(svc: &Service) -> Option<String> {
    svc.spec
        .as_ref()?
        .load_balancer_ip
        .clone()
        .filter(|s| !s.is_empty())
}

impl ClusterState {
    /// Gives every LoadBalancer service without an address one, and takes
    /// it back from services that are no longer LoadBalancers. True when
    /// the store changed.
    pub fn allocate_load_balancers(&mut self, now: chrono::DateTime<chrono::Utc>) -> bool {
        let (first, last) = self.config.public.lb_pool;
        let in_pool = |ip: Ipv4Addr| (first..=last).contains(&ip);
        let mut changed = false;
        let mut used: HashSet<Ipv4Addr> = HashSet::new();
        // Keep what is still right; note what needs an address.
        let mut wanting = Vec::new();
        for (i, mut svc) in self.services.iter_mut().enumerate() {
            let ips = ingress_ips(&svc);
            let is_lb = service_type(&svc) == "LoadBalancer";
            let wrong = ips.len() != 1
                || !in_pool(ips[0])
                || requested(&svc).is_some_and(|r| r != ips[0].to_string())
                || used.contains(&ips[0]);
            if !is_lb || wrong {
                if !ips.is_empty() {
                    if let Some(st) = svc.status.as_mut() {
                        st.load_balancer = Some(LoadBalancerStatus::default());
                    }
                    changed = true;
                }
                if is_lb {
                    wanting.push(i);
                }
                continue;
            }
            used.insert(ips[0]);
        }
        // Requested addresses first, so the pool's next free one cannot take them.
        wanting.sort_by_key(|i| requested(&self.services[*i]).is_none());
        for i in wanting {
            let svc = &self.services[i];
            let (ns, name) = (
                namespace(&svc.metadata).to_string(),
                svc.metadata.name.clone().unwrap_or_default(),
            );
            let choice = match requested(svc) {
                Some(r) => match r.parse::<Ipv4Addr>() {
                    Ok(ip) if !in_pool(ip) => Err(format!(
                        "Failed to allocate IP for \"{ns}/{name}\": \"{ip}\" is not allowed in config (the lab's pool is {first}-{last})"
                    )),
                    Ok(ip) if used.contains(&ip) => Err(format!(
                        "Failed to allocate IP for \"{ns}/{name}\": \"{ip}\" is already in use"
                    )),
                    Ok(ip) => Ok(ip),
                    Err(_) => Err(format!(
                        "Failed to allocate IP for \"{ns}/{name}\": spec.loadBalancerIP {r:?} is not an IPv4 address"
                    )),
                },
                None => (u32::from(first)..=u32::from(last))
                    .map(Ipv4Addr::from)
                    .find(|ip| !used.contains(ip))
                    .ok_or_else(|| {
                        format!(
                            "Failed to allocate IP for \"{ns}/{name}\": no available IPs (pool {first}-{last})"
                        )
                    }),
            };
            let who = Involved {
                kind: "Service",
                namespace: &ns,
                name: &name,
            };
            match choice {
                Ok(ip) => {
                    used.insert(ip);
                    let svc = &mut self.services[i];
                    svc.status
                        .get_or_insert_with(Default::default)
                        .load_balancer = Some(LoadBalancerStatus {
                        ingress: Some(vec![LoadBalancerIngress {
                            ip: Some(ip.to_string()),
                            ip_mode: Some("VIP".into()),
                            ..Default::default()
                        }]),
                    });
                    self.record(
                        who.clone(),
                        "Normal",
                        "EnsuringLoadBalancer",
                        "service-controller",
                        "Ensuring load balancer",
                        now,
                    );
                    self.record(
                        who.clone(),
                        "Normal",
                        "IPAllocated",
                        "metallb-controller",
                        format!("Assigned IP [\"{ip}\"]"),
                        now,
                    );
                    self.record(
                        who,
                        "Normal",
                        "EnsuredLoadBalancer",
                        "service-controller",
                        "Ensured load balancer",
                        now,
                    );
                    changed = true;
                }
                Err(message) => {
                    let repeated = self.events.iter().any(|e| {
                        e.involved_object.name.as_deref() == Some(name.as_str())
                            && e.message.as_deref() == Some(message.as_str())
                    });
                    if !repeated {
                        self.record(
                            who,
                            "Warning",
                            "AllocationFailed",
                            "metallb-controller",
                            message,
                            now,
                        );
                        changed = true;
                    }
                }
            }
        }
        changed
    }
}

/// Which node announces which LoadBalancer addresses: one node per
/// address, chosen by a hash of the service among the nodes that may
/// (all nodes, or with `externalTrafficPolicy: Local` only those with a
/// ready endpoint, as MetalLB does), so the choice is stable.
pub fn announcements(st: &ClusterState) -> BTreeMap<String, Vec<Ipv4Addr>> {
    let mut out: BTreeMap<String, Vec<Ipv4Addr>> = st
        .config
        .nodes
        .iter()
        .map(|n| (n.clone(), Vec::new()))
        .collect();
    for svc in &st.services {
        if service_type(svc) != "LoadBalancer" {
            continue;
        }
        let ns = namespace(&svc.metadata);
        let name = svc.metadata.name.as_deref().unwrap_or_default();
        let local = svc
            .spec
            .as_ref()
            .and_then(|s| s.external_traffic_policy.as_deref())
            == Some("Local");
        let candidates: Vec<&String> = if local {
            let with_endpoints: HashSet<String> = st
                .endpoints_of(ns, name)
                .and_then(|e| e.subsets.as_ref())
                .into_iter()
                .flatten()
                .flat_map(|s| s.addresses.iter().flatten())
                .filter_map(|a| a.node_name.clone())
                .collect();
            st.config
                .nodes
                .iter()
                .filter(|n| with_endpoints.contains(*n))
                .collect()
        } else {
            st.config.nodes.iter().collect()
        };
        if candidates.is_empty() {
            continue;
        }
        for ip in ingress_ips(svc) {
            let h = fnv(&format!("{ns}/{name}/{ip}"));
            let node = candidates[(h % candidates.len() as u64) as usize];
            out.get_mut(node).expect("a lab node").push(ip);
        }
    }
    for ips in out.values_mut() {
        ips.sort();
    }
    out
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::HostInfo;
    use chrono::Utc;
    use rand::SeedableRng;

    fn lab(services: &str) -> ClusterState {
        let text = format!(
            "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  nodes: 2\n  public:\n    loadBalancerPool: 203.0.113.200-203.0.113.201\n---\n{services}"
        );
        let spec = crate::lab::load_str(std::path::Path::new("t.yaml"), &text, &Default::default())
            .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        ClusterState::plan(&spec, &HostInfo::default(), Utc::now(), &mut rng).unwrap()
    }

    fn svc(name: &str, extra: &str) -> String {
        format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  type: LoadBalancer\n  ports:\n  - port: 8080\n    targetPort: 80\n  selector:\n    run: x\n{extra}---\n")
    }

    fn ip_of(st: &ClusterState, name: &str) -> Vec<Ipv4Addr> {
        ingress_ips(st.service("default", name).unwrap())
    }

    #[test]
    fn pool_allocation_request_exhaustion_and_release() {
        let mut st = lab(&format!(
            "{}{}{}",
            svc("a", ""),
            svc("b", "  loadBalancerIP: 203.0.113.200\n"),
            svc("c", "")
        ));
        assert!(
            ip_of(&st, "a").is_empty(),
            "pending until the controller runs"
        );
        assert!(st.allocate_load_balancers(Utc::now()));
        // b asked for .200; a gets the next free one; c finds the pool empty.
        assert_eq!(
            ip_of(&st, "b"),
            ["203.0.113.200".parse::<Ipv4Addr>().unwrap()]
        );
        assert_eq!(
            ip_of(&st, "a"),
            ["203.0.113.201".parse::<Ipv4Addr>().unwrap()]
        );
        assert!(ip_of(&st, "c").is_empty());
        assert!(st
            .events
            .iter()
            .any(|e| e.reason.as_deref() == Some("AllocationFailed")
                && e.message.as_deref().unwrap().contains("no available IPs")));
        assert!(!st.allocate_load_balancers(Utc::now()), "stable");
        // a becomes a NodePort: its address is released and c gets it.
        let mut a = st.service("default", "a").unwrap().clone();
        a.spec.as_mut().unwrap().type_ = Some("NodePort".into());
        st.upsert_service(a, Utc::now(), &mut rand::rng()).unwrap();
        assert!(st.allocate_load_balancers(Utc::now()));
        assert!(ip_of(&st, "a").is_empty());
        assert_eq!(
            ip_of(&st, "c"),
            ["203.0.113.201".parse::<Ipv4Addr>().unwrap()]
        );
        // Each address is announced by exactly one node.
        let ann = announcements(&st);
        let all: Vec<Ipv4Addr> = ann.values().flatten().copied().collect();
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn requested_address_outside_the_pool() {
        let mut st = lab(&svc("a", "  loadBalancerIP: 192.0.2.1\n"));
        st.allocate_load_balancers(Utc::now());
        assert!(ip_of(&st, "a").is_empty());
        assert!(st.events.iter().any(|e| e
            .message
            .as_deref()
            .unwrap()
            .contains("not allowed in config")));
    }
}
