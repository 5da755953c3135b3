//! Which `spec.externalIPs` a Service may claim. kube-apiserver refuses
//! special addresses (`ValidateNonSpecialIP`: unspecified, loopback,
//! link-local, link-local multicast) because kube-proxy would capture them
//! on every node. netlab also refuses the lab's own pod and service ranges:
//! an "external" address there would shadow a pod or a clusterIP in the
//! proxy's maps, which Kubernetes only warns about in its docs. Pure.

use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// Why `ip` cannot be an external IP of a Service in a lab with these
/// ranges, or None when it can.
pub fn refusal(ip: Ipv4Addr, pod_cidr: Ipv4Net, service_cidr: Ipv4Net) -> Option<String> {
    if ip.is_unspecified() {
        return Some("may not be unspecified (0.0.0.0)".into());
    }
    if ip.is_loopback() {
        return Some("may not be in the loopback range (127.0.0.0/8, ::1/128)".into());
    }
    if ip.is_link_local() {
        return Some("may not be in the link-local range (169.254.0.0/16, fe80::/10)".into());
    }
    if u32::from(ip) >> 8 == u32::from(Ipv4Addr::new(224, 0, 0, 0)) >> 8 {
        return Some(
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)".into(),
        );
    }
    if pod_cidr.contains(&ip) {
        return Some(format!(
            "may not be in the lab's pod range ({pod_cidr}): it would shadow a pod's address"
        ));
    }
    if service_cidr.contains(&ip) {
        return Some(format!(
            "may not be in the lab's service range ({service_cidr}): it would shadow a clusterIP"
        ));
    }
    None
}

/// The first invalid entry of `spec.externalIPs`, as kube-apiserver words it.
pub fn validate(ips: &[String], pod_cidr: Ipv4Net, service_cidr: Ipv4Net) -> Result<(), String> {
    for (i, raw) in ips.iter().enumerate() {
        let Ok(ip) = raw.parse::<Ipv4Addr>() else {
            return Err(format!(
                "spec.externalIPs[{i}]: Invalid value: {raw:?}: must be a valid IPv4 address"
            ));
        };
        if let Some(why) = refusal(ip, pod_cidr, service_cidr) {
            return Err(format!(
                "spec.externalIPs[{i}]: Invalid value: {raw:?}: {why}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_and_own_ranges_are_refused() {
        let pods: Ipv4Net = "10.244.0.0/16".parse().unwrap();
        let services: Ipv4Net = "10.0.0.0/16".parse().unwrap();
        let table: &[(&str, Option<&str>)] = &[
            ("203.0.113.7", None),
            ("192.168.10.5", None),
            ("0.0.0.0", Some("unspecified")),
            ("127.0.0.1", Some("loopback")),
            ("127.255.0.9", Some("loopback")),
            ("169.254.169.254", Some("link-local range")),
            ("224.0.0.251", Some("link-local multicast")),
            ("224.0.1.1", None),
            ("10.244.1.5", Some("pod range (10.244.0.0/16)")),
            ("10.0.0.30", Some("service range (10.0.0.0/16)")),
            ("10.1.0.1", None),
        ];
        for (ip, want) in table {
            let got = refusal(ip.parse().unwrap(), pods, services);
            match want {
                None => assert_eq!(got, None, "{ip}"),
                Some(w) => assert!(
                    got.as_deref().is_some_and(|g| g.contains(w)),
                    "{ip}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn messages_name_the_entry() {
        let pods: Ipv4Net = "10.244.0.0/16".parse().unwrap();
        let services: Ipv4Net = "10.0.0.0/16".parse().unwrap();
        let ips = vec!["203.0.113.7".to_string(), "127.0.0.1".to_string()];
        assert_eq!(
            validate(&ips, pods, services).unwrap_err(),
            "spec.externalIPs[1]: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)"
        );
        assert!(validate(&["nope".into()], pods, services)
            .unwrap_err()
            .contains("must be a valid IPv4 address"));
        assert_eq!(validate(&[], pods, services), Ok(()));
    }
}
