use super::*;
use crate::proxy::netlink::trace::Packet;

fn lab() -> LabView {
    LabView {
        services: vec![ServiceView {
            namespace: "default".into(),
            name: "my-nginx".into(),
            cluster_ip: Some(Ipv4Addr::new(10, 0, 0, 20)),
            ports: vec![("http".into(), 80, "TCP".into())],
            local: false,
            affinity_timeout: None,
        }],
        pods: vec![
            PodView {
                namespace: "default".into(),
                name: "curl".into(),
                ip: Ipv4Addr::new(10, 244, 1, 3),
                node: "node-1".into(),
            },
            PodView {
                namespace: "default".into(),
                name: "my-nginx-a".into(),
                ip: Ipv4Addr::new(10, 244, 2, 2),
                node: "node-2".into(),
            },
        ],
        nodes: vec![("node-2".into(), "10.244.2.0/24".into(), "172.18.0.3".into())],
        isolated: None,
    }
}

fn src() -> Source {
    Source {
        what: "pod default/curl".into(),
        ip: Ipv4Addr::new(10, 244, 1, 3),
        netns: "p".into(),
        node: "node-1".into(),
        nodes: vec![
            ("node-1".into(), "n1".into()),
            ("node-2".into(), "n2".into()),
        ],
        from_node: false,
    }
}

fn ev(id: u32, chain: &str, verdict: Option<Verdict>, daddr: Option<[u8; 4]>) -> Event {
    Event {
        id,
        table: "netlab".into(),
        chain: chain.into(),
        kind: "rule",
        verdict,
        handle: None,
        packet: daddr.map(|d| Packet {
            saddr: Ipv4Addr::new(10, 244, 1, 3),
            daddr: d.into(),
            proto: 6,
            sport: 40000,
            dport: 80,
        }),
    }
}

fn seen(events: Vec<Event>, outcome: &'static str) -> Seen {
    Seen {
        events: events
            .into_iter()
            .map(|e| ("node-1".to_string(), e))
            .collect(),
        conntrack: Vec::new(),
        picks: Vec::new(),
        denials: Vec::new(),
        dst: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 20), 80),
        sport: 40000,
        proto: Protocol::Tcp,
        outcome,
        elapsed: Duration::from_micros(210),
    }
}

const SVC: &str = "service-0123abcd-default/my-nginx/tcp/http";

#[test]
fn a_connection_through_a_service_names_service_endpoint_pod_and_node() {
    let events = vec![
        ev(1, "trace-10.244.1.3-40000-pre", None, Some([10, 0, 0, 20])),
        ev(
            1,
            "nat-prerouting",
            Some(Verdict::Jump("services".into())),
            None,
        ),
        ev(1, "services", Some(Verdict::Goto(SVC.into())), None),
        ev(
            2,
            "filter-forward",
            Some(Verdict::Continue),
            Some([10, 244, 2, 2]),
        ),
        // Another trace's packet: not ours.
        Event {
            packet: Some(Packet {
                saddr: Ipv4Addr::new(10, 244, 1, 9),
                daddr: Ipv4Addr::new(10, 0, 0, 20),
                proto: 6,
                sport: 40000,
                dport: 80,
            }),
            ..ev(
                3,
                "services",
                Some(Verdict::Goto("service-ffffffff-x/y/tcp/z".into())),
                None,
            )
        },
    ];
    let t = explain(&src(), &seen(events, "connected"), &lab(), Trace::default());
    assert_eq!(t.service.as_deref(), Some("default/my-nginx"));
    assert_eq!(t.service_port.as_deref(), Some("http"));
    assert_eq!(t.endpoint.as_deref(), Some("10.244.2.2:80"));
    assert_eq!(t.endpoint_pod.as_deref(), Some("default/my-nginx-a"));
    assert_eq!(t.endpoint_node.as_deref(), Some("node-2"));
    assert_eq!(t.reason, None);
    let kinds: Vec<&str> = t.steps.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, ["source", "rule", "dnat", "route", "result"]);
    assert!(
        t.steps[3]
            .text
            .contains("routes 10.244.2.0/24 via 172.18.0.3 (node-2)"),
        "{:?}",
        t.steps[3]
    );
    assert_eq!(
        t.steps[4].text,
        "connected in 0.21 ms to pod default/my-nginx-a through Service default/my-nginx port http"
    );
}

#[test]
fn failures_say_why_in_kubernetes_terms() {
    let rejected = vec![
        ev(1, "trace-x", None, Some([10, 0, 0, 20])),
        ev(1, "services", Some(Verdict::Goto(SVC.into())), None),
        ev(
            2,
            "filter-forward",
            Some(Verdict::Jump("service-endpoints-check".into())),
            Some([10, 0, 0, 20]),
        ),
        ev(
            2,
            "service-endpoints-check",
            Some(Verdict::Goto("reject-chain".into())),
            None,
        ),
        ev(2, "reject-chain", Some(Verdict::Drop), None),
    ];
    let t = explain(&src(), &seen(rejected, "refused"), &lab(), Trace::default());
    assert_eq!(
        t.reason.as_deref(),
        Some("Service default/my-nginx has no ready endpoints (rejected by the no-endpoint-services set)")
    );
    let mut wrong_port = seen(vec![], "refused");
    wrong_port.dst = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 20), 8080);
    let t = explain(&src(), &wrong_port, &lab(), Trace::default());
    assert_eq!(
        t.reason.as_deref(),
        Some("Service default/my-nginx has no port 8080 (its ports: http 80/TCP)")
    );
    let mut outside = seen(vec![], "timeout");
    outside.dst = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 80);
    let t = explain(&src(), &outside, &lab(), Trace::default());
    assert_eq!(
        t.reason.as_deref(),
        Some("nothing in the lab answers at 192.0.2.1:80 (timeout)")
    );
}

#[test]
fn chain_names_give_the_service_port() {
    assert_eq!(
        service_of_chain("endpoint-0123abcd-default/my-nginx/tcp/https__10.244.2.2/443"),
        Some((
            "endpoint",
            "default/my-nginx".into(),
            "tcp".into(),
            "https".into()
        ))
    );
    assert_eq!(service_of_chain("services"), None);
    assert_eq!(service_of_chain("service-endpoints-check"), None);
}

#[test]
fn a_dns_query_asks_for_an_a_record() {
    let q = query_bytes("my-nginx.default.svc.cluster.local.");
    let m = hickory_proto::op::Message::from_vec(&q).unwrap();
    assert_eq!(m.queries.len(), 1);
    assert_eq!(
        m.queries[0].name().to_string(),
        "my-nginx.default.svc.cluster.local."
    );
}

#[test]
fn hairpin_is_named_as_the_reason_for_masquerade() {
    // The client pod is the endpoint the kernel chose.
    let mut lab = lab();
    lab.pods[1].ip = Ipv4Addr::new(10, 244, 1, 3);
    lab.pods[1].node = "node-1".into();
    let events = vec![
        ev(1, "trace-x", None, Some([10, 0, 0, 20])),
        ev(1, "services", Some(Verdict::Goto(SVC.into())), None),
        ev(
            2,
            "nat-postrouting",
            Some(Verdict::Jump("masquerading".into())),
            Some([10, 244, 1, 3]),
        ),
        ev(2, "masquerading", Some(Verdict::Accept), None),
    ];
    let t = explain(&src(), &seen(events, "connected"), &lab, Trace::default());
    let masq = t
        .steps
        .iter()
        .find(|s| s.kind == "masquerade")
        .expect("a masquerade step");
    assert!(masq.text.contains("hairpin"), "{masq:?}");
    assert_eq!(t.endpoint.as_deref(), Some("10.244.1.3:80"));
}

#[test]
fn a_local_policy_without_a_local_endpoint_is_named() {
    let mut lab = lab();
    lab.services[0].local = true;
    let events = vec![
        ev(1, "trace-x", None, Some([10, 0, 0, 20])),
        ev(
            1,
            "services",
            Some(Verdict::Goto(SVC.replace("service-", "external-"))),
            None,
        ),
        ev(
            2,
            "filter-forward",
            Some(Verdict::Jump("nodeport-endpoints-check".into())),
            Some([10, 0, 0, 20]),
        ),
        ev(2, "nodeport-endpoints-check", Some(Verdict::Drop), None),
    ];
    let t = explain(&src(), &seen(events, "timeout"), &lab, Trace::default());
    assert_eq!(
        t.reason.as_deref(),
        Some("Service default/my-nginx has externalTrafficPolicy: Local and node-1 runs none of its endpoints: dropped (no-local-endpoint set), so that the client's address is kept")
    );
}

#[test]
fn the_conntrack_entry_shows_the_dnat() {
    let p = |s: [u8; 4], d: [u8; 4], sp: u16, dp: u16| Packet {
        saddr: s.into(),
        daddr: d.into(),
        proto: 6,
        sport: sp,
        dport: dp,
    };
    let mut seen = seen(vec![], "connected");
    seen.conntrack = vec![(
        "node-1".into(),
        Conntrack {
            id: 1234,
            original: p([10, 244, 1, 3], [10, 0, 0, 20], 40000, 80),
            reply: p([10, 244, 2, 2], [10, 244, 1, 3], 80, 40000),
        },
    )];
    let t = explain(&src(), &seen, &lab(), Trace::default());
    assert_eq!(t.conntrack_id, Some(1234));
    let step = t.steps.iter().find(|s| s.kind == "conntrack").unwrap();
    assert_eq!(
        step.text,
        "node-1 conntrack id 1234: 10.244.1.3:40000 → 10.0.0.20:80; replies come from 10.244.2.2:80 and are un-DNATed to 10.0.0.20:80"
    );
}

#[test]
fn session_affinity_is_named_as_the_reason_for_the_endpoint() {
    const EP: &str = "endpoint-0123abcd-default/my-nginx/tcp/http__10.244.2.2/80";
    let events = |handle| {
        vec![
            ev(1, "trace-x", None, Some([10, 0, 0, 20])),
            ev(1, "services", Some(Verdict::Goto(SVC.into())), None),
            Event {
                handle: Some(handle),
                ..ev(1, SVC, Some(Verdict::Goto(EP.into())), None)
            },
            ev(2, "filter-forward", None, Some([10, 244, 2, 2])),
        ]
    };
    let mut view = lab();
    view.services[0].affinity_timeout = Some(600);
    // The rule that chose the endpoint's chain looked the client up in the
    // endpoint's affinity set (rule 7); the other one drew a number (8).
    let mut s = seen(events(7), "connected");
    let pick = |handle, exprs: &[&str]| Pick {
        node: "node-1".into(),
        chain: SVC.into(),
        handle,
        to: EP.into(),
        exprs: exprs.iter().map(|x| x.to_string()).collect(),
    };
    s.picks = vec![
        pick(7, &["payload", "lookup", "immediate"]),
        pick(8, &["numgen", "cmp", "immediate"]),
    ];
    let t = explain(&src(), &s, &view, Trace::default());
    assert_eq!(t.chosen_by, Some("session affinity"));
    let dnat = t.steps.iter().find(|s| s.kind == "dnat").unwrap();
    assert!(
        dnat.text
            .contains("by session affinity: 10.244.1.3 was sent to it within the last 600 s")
            && dnat.text.contains("sessionAffinity: ClientIP"),
        "{dnat:?}"
    );
    let mut s = seen(events(8), "connected");
    s.picks = vec![pick(8, &["numgen", "cmp", "immediate"])];
    let t = explain(&src(), &s, &view, Trace::default());
    assert_eq!(t.chosen_by, Some("random"));
    let dnat = t.steps.iter().find(|s| s.kind == "dnat").unwrap();
    assert!(
        dnat.text.contains(
            "chosen at random (10.244.1.3 had no endpoint yet; it keeps this one for 600 s"
        ),
        "{dnat:?}"
    );
}

#[test]
fn from_outside_pod_and_cluster_ips_are_said_to_be_inside_only() {
    let outside = Source {
        what: "host external".into(),
        ip: Ipv4Addr::new(203, 0, 113, 254),
        netns: "h".into(),
        node: String::new(),
        nodes: src().nodes,
        from_node: false,
    };
    let mut s = seen(Vec::new(), "unreachable");
    s.dst = SocketAddrV4::new(Ipv4Addr::new(10, 244, 2, 2), 80);
    let t = explain(&outside, &s, &lab(), Trace::default());
    assert_eq!(t.result, "unreachable");
    let kinds: Vec<&str> = t.steps.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, ["source", "result"], "no route step: {t:?}");
    assert!(
        t.steps[0]
            .text
            .ends_with("host external has no route to 10.244.2.2"),
        "{t:?}"
    );
    assert!(
        t.reason
            .as_deref()
            .unwrap()
            .starts_with("10.244.2.2 is a pod's IP: pods are reached from outside the cluster only through a Service"),
        "{t:?}"
    );
    let t = explain(
        &outside,
        &seen(Vec::new(), "timeout"),
        &lab(),
        Trace::default(),
    );
    assert!(
        t.reason
            .as_deref()
            .unwrap()
            .starts_with("10.0.0.20 is the clusterIP of Service default/my-nginx: it answers inside the cluster only"),
        "{t:?}"
    );
}

#[test]
fn a_network_policy_rejection_names_the_policy() {
    let mut policy_drop = ev(2, "ingress-10.244.2.2", Some(Verdict::Drop), None);
    policy_drop.table = crate::proxy::policy::TABLE.into();
    policy_drop.handle = Some(7);
    let events = vec![
        ev(1, "trace-x", None, Some([10, 244, 2, 2])),
        ev(2, "forward", None, Some([10, 244, 2, 2])),
        policy_drop,
    ];
    let mut s = seen(events, "unreachable");
    s.dst = SocketAddrV4::new(Ipv4Addr::new(10, 244, 2, 2), 80);
    s.denials = vec![(
        "node-1".into(),
        "default/my-nginx-a ingress denied: isolated by default/deny".into(),
    )];
    let t = explain(&src(), &s, &lab(), Trace::default());
    assert!(
        t.steps.iter().any(|st| st.kind == "policy"
            && st.text
                == "node-1 nft: NetworkPolicy rejects it: default/my-nginx-a ingress denied: isolated by default/deny"),
        "{:?}",
        t.steps
    );
    assert_eq!(
        t.reason.as_deref(),
        Some("rejected by NetworkPolicy (default/my-nginx-a ingress denied: isolated by default/deny)")
    );
}

#[test]
fn a_lab_with_policies_says_which_pods_they_isolate() {
    let mut lab = lab();
    lab.isolated = Some(
        [(
            Ipv4Addr::new(10, 244, 2, 2),
            (Some(vec!["default/web".to_string()]), None),
        )]
        .into(),
    );
    let mut s = seen(vec![], "connected");
    s.dst = SocketAddrV4::new(Ipv4Addr::new(10, 244, 2, 2), 80);
    let t = explain(&src(), &s, &lab, Trace::default());
    let policy: Vec<&str> = t
        .steps
        .iter()
        .filter(|st| st.kind == "policy")
        .map(|st| st.text.as_str())
        .collect();
    assert_eq!(
        policy,
        [
            "NetworkPolicy: no policy selects pod default/curl for egress: it may reach every destination",
            "NetworkPolicy: pod default/my-nginx-a is isolated for ingress by default/web: only what they allow passes"
        ]
    );
    // Without policies in the lab, nothing is said of them.
    let t = explain(&src(), &s, &self::lab(), Trace::default());
    assert!(t.steps.iter().all(|st| st.kind != "policy"));
}
