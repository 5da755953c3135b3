//! Writes the benchmark report (no root needed): reads the figures the
//! other benches saved in `$NETLAB_BENCH_DIR/*.json` and writes
//! `$NETLAB_BENCH_REPORT/report.md` (every figure, the baselines measured in
//! the same run, the ratios, the targets met or missed) and `report.svg`
//! (the chart). `scripts/bench.sh` runs it last.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use plotters::prelude::*;
use serde_json::Value;

/// All figures by key, from every results file.
struct Figures(BTreeMap<String, Value>);

impl Figures {
    fn load(dir: &std::path::Path) -> Figures {
        let mut all = BTreeMap::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.path().extension().is_some_and(|e| e == "json") {
                let v: BTreeMap<String, Value> =
                    serde_json::from_slice(&std::fs::read(entry.path()).unwrap()).unwrap();
                all.extend(v);
            }
        }
        Figures(all)
    }

    fn f(&self, key: &str) -> Option<f64> {
        self.0.get(key).and_then(Value::as_f64)
    }

    fn s(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }
}

fn secs(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(s) if s >= 1.0 => format!("{s:.2} s"),
        Some(s) if s >= 1e-3 => format!("{:.1} ms", s * 1e3),
        Some(s) => format!("{:.1} µs", s * 1e6),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    }
}

fn mib(v: Option<f64>) -> String {
    v.map(|b| format!("{:.1} MiB", b / 1048576.0))
        .unwrap_or_else(|| "—".into())
}

/// "met" / "**missed**" / "not measured".
fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "not measured",
    }
}

fn sh(cmd: &str) -> String {
    std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn main() {
    let dir = PathBuf::from(std::env::var_os("NETLAB_BENCH_DIR").unwrap_or("bench/results".into()));
    let out = PathBuf::from(std::env::var_os("NETLAB_BENCH_REPORT").unwrap_or("bench".into()));
    let fig = Figures::load(&dir);
    std::fs::create_dir_all(&out).unwrap();
    let md = markdown(&fig);
    std::fs::write(out.join("report.md"), md).unwrap();
    chart(&fig, &out.join("report.svg"));
    eprintln!(
        "wrote {} and {}",
        out.join("report.md").display(),
        out.join("report.svg").display()
    );
}

const METHODS: [(&str, &str); 4] = [
    ("netlab", "netlab (`net::apply`)"),
    ("floor", "kernel floor (`ip -batch`)"),
    ("ip", "`ip` script"),
    ("cni", "CNI bridge + host-local"),
];

fn sizes(fig: &Figures, prefix: &str) -> Vec<u64> {
    let mut v: Vec<u64> = fig
        .0
        .keys()
        .filter_map(|k| k.strip_prefix(prefix))
        .filter_map(|rest| rest.parse().ok())
        .collect();
    v.sort();
    v.dedup();
    v
}

fn markdown(fig: &Figures) -> String {
    let mut m = String::new();
    let mut targets: Vec<(String, String, &'static str)> = Vec::new();
    let commit = sh("git rev-parse --short HEAD 2>/dev/null");
    writeln!(m, "# netlab benchmark report\n").unwrap();
    writeln!(
        m,
        "Measured in one run of `scripts/bench.sh` on {} ({} cores, {}, kernel {}), commit {}. \
         Every baseline was measured in the same run on the same machine. \
         Load average at the start of each part: pod network {:.2}, proxy {:.2}, data path {:.2}, scale {:.2}, API {:.2}.\n",
        sh("date -u +'%Y-%m-%d %H:%M UTC'"),
        sh("nproc"),
        sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'"),
        sh("uname -r"),
        if commit.is_empty() { "?".into() } else { commit },
        fig.f("podnet.load").unwrap_or(f64::NAN),
        fig.f("proxy.load").unwrap_or(f64::NAN),
        fig.f("datapath.load").unwrap_or(f64::NAN),
        fig.f("scale.load").unwrap_or(f64::NAN),
        fig.f("api.load").unwrap_or(f64::NAN),
    )
    .unwrap();
    writeln!(m, "![chart](report.svg)\n").unwrap();

    // 1. Pod network.
    writeln!(m, "## 1. Pod network bring-up and teardown (2 nodes)\n").unwrap();
    writeln!(
        m,
        "The same topology four ways: a dc namespace with the LAN bridge, 2 node namespaces \
         (veth to the LAN, bridge `cni0`, a /22 of pod addresses each), and N pod namespaces, \
         each joined to its node's `cni0` by a veth.\n\n\
         - **netlab**: `net::apply` of the plan `netlab up` makes (`controller::up::net_plan`, \
           2 nodes, `podCIDRMaskSize: 22`), and `net::teardown`. Per pod: netns, veth born in \
           the pod namespace, bridge port with hairpin, lo and eth0 up, address, default route.\n\
         - **CNI bridge + host-local**: Debian's containernetworking-plugins, driven as a \
           container runtime drives it: create the pod netns, exec `/usr/lib/cni/bridge` in the \
           node's namespace with `CNI_COMMAND=ADD`, `CNI_CONTAINERID`, `CNI_NETNS`, \
           `CNI_IFNAME=eth0`, `CNI_PATH` and the network config (bridge `cni0`, `isGateway`, \
           `hairpinMode`, host-local IPAM over the node's /22, default route) on stdin; teardown \
           `CNI_COMMAND=DEL` then delete the netns. {} plugins at a time (the cores here). dc \
           and nodes are made by `ip` commands (in the time).\n\
         - **`ip` script**: `scripts/baseline-ip.sh LAB N 22`, one `ip` command per step (same \
           steps as netlab, one process each).\n\
         - **kernel floor**: one `ip -batch` process creates every namespace and every veth with \
           both ends placed (`link add vethX netns NODE type veth peer name eth0 netns POD`), \
           then one `ip -n NS -batch` for the dc and for each node makes the bridge and enslaves \
           the ports (up). It does **not** configure the pod side: no lo or eth0 up, no \
           address, no route, no hairpin (`ip -batch` cannot switch namespace per line, and a \
           process per pod is no floor). So it is a lower bound on netlab's work, not the same \
           work. Teardown floor: one `ip -batch` of `netns del` lines (pods, nodes, dc).\n\n\
         Teardown everywhere ends when the namespaces are unmounted; the kernel frees them \
         asynchronously afterwards (the bench waits for that between measurements). netlab and \
         the floor: median of 3 runs; CNI and the script: 1 run.\n",
        fig.f("podnet.cni_jobs").unwrap_or(2.0)
    )
    .unwrap();
    let pods = sizes(fig, "podnet.netlab.up.");
    for (phase, title) in [("up", "bring-up"), ("down", "teardown")] {
        writeln!(
            m,
            "| {title}, pods | netlab | kernel floor | `ip` script | CNI bridge | netlab ÷ floor | CNI ÷ netlab | script ÷ netlab |"
        )
        .unwrap();
        writeln!(m, "|---:|---:|---:|---:|---:|---:|---:|---:|").unwrap();
        for &n in &pods {
            let g = |meth: &str| fig.f(&format!("podnet.{meth}.{phase}.{n}"));
            writeln!(
                m,
                "| {n} | {} | {} | {} | {} | {} | {} | {} |",
                secs(g("netlab")),
                secs(g("floor")),
                secs(g("ip")),
                secs(g("cni")),
                ratio(g("netlab"), g("floor")),
                ratio(g("cni"), g("netlab")),
                ratio(g("ip"), g("netlab")),
            )
            .unwrap();
        }
        writeln!(m).unwrap();
        let g = |meth: &str| fig.f(&format!("podnet.{meth}.{phase}.1000"));
        if let (Some(nl), Some(fl)) = (g("netlab"), g("floor")) {
            targets.push((
                format!("1 000-pod {title} ≤ 1.5 × kernel floor"),
                format!("{} vs {} ({:.2}×)", secs(Some(nl)), secs(Some(fl)), nl / fl),
                verdict(Some(nl <= 1.5 * fl)),
            ));
        }
        if let (Some(nl), Some(c)) = (g("netlab"), g("cni")) {
            targets.push((
                format!("1 000-pod {title} ≥ 5 × faster than CNI"),
                format!("{} vs {} ({:.1}×)", secs(Some(nl)), secs(Some(c)), c / nl),
                verdict(Some(c >= 5.0 * nl)),
            ));
        }
    }

    // 2. Proxy.
    writeln!(
        m,
        "## 2. Service rules (one node, 2 endpoints per service)\n"
    )
    .unwrap();
    writeln!(
        m,
        "Full sync and one endpoint change through netlab's `Proxier` as the controller runs it \
         (in-process nf_tables netlink, state file included); endpoint change: median of 15 \
         (best in brackets). The baselines load the very same table into a fresh namespace: as \
         `nft -f` text (each set's elements in one command), and as JSON by `nft -j -f` (nft's \
         own listing of the table, chains before the maps that jump to them), which is what the \
         `nftables` crate runs; and one endpoint change (an element out of a map and back in, \
         one batch) by an `nft -f` process against the loaded table, which is what that crate \
         pays per change (median of 15). Connect latency: a node connects to a clusterIP whose endpoint is \
         a local pod, against a linear chain of one DNAT rule per service (kube-proxy iptables \
         mode's shape) with the target last. Each configuration has its own node and pod, all \
         loaded at once, and the 2 000 connects of each are taken in 20 interleaved rounds, so \
         that the machine's drift during the run (±40 % between configurations measured one \
         after another) falls on all of them alike; median and p99.\n"
    )
    .unwrap();
    writeln!(
        m,
        "| services | full sync | `nft -f` of the same table (baseline) | `nft -j -f`, the `nftables` crate's path | one endpoint change | by an `nft -f` process | connect latency (maps) | vs 1 service |"
    )
    .unwrap();
    writeln!(m, "|---:|---:|---:|---:|---:|---:|---:|---:|").unwrap();
    let lat1 = fig.f("proxy.latency.maps.1");
    if lat1.is_some() {
        writeln!(m, "| 1 | | | | | | {} | |", secs(lat1)).unwrap();
    }
    for n in sizes(fig, "proxy.full_sync.") {
        let lat = fig.f(&format!("proxy.latency.maps.{n}"));
        writeln!(
            m,
            "| {n} | {} | {} | {} | {} ({}) | {} | {} | {} |",
            secs(fig.f(&format!("proxy.full_sync.{n}"))),
            secs(fig.f(&format!("proxy.nft_text.{n}"))),
            match fig.f(&format!("proxy.nft_json.{n}")) {
                None if fig.s("proxy.nft_json_refused").is_some() => "refused (below)".into(),
                v => secs(v),
            },
            secs(fig.f(&format!("proxy.change.{n}"))),
            secs(fig.f(&format!("proxy.change_best.{n}"))),
            secs(fig.f(&format!("proxy.nft_change.{n}"))),
            secs(lat),
            match (lat, lat1) {
                (Some(a), Some(b)) => format!("{:+.1} %", (a / b - 1.0) * 100.0),
                _ => "—".into(),
            }
        )
        .unwrap();
    }
    for n in sizes(fig, "proxy.latency.linear.") {
        let lat = fig.f(&format!("proxy.latency.linear.{n}"));
        writeln!(
            m,
            "| {n}, linear chain (baseline) | | | | | | {} | {} |",
            secs(lat),
            match (lat, lat1) {
                (Some(a), Some(b)) => format!("{:+.1} %", (a / b - 1.0) * 100.0),
                _ => "—".into(),
            }
        )
        .unwrap();
    }
    writeln!(
        m,
        "\nThe pod directly (no service): {}.\n",
        secs(fig.f("proxy.latency.direct"))
    )
    .unwrap();
    if let Some(why) = fig.s("proxy.nft_json_refused") {
        writeln!(
            m,
            "`nft -j -f` ({}) refused the table's JSON: \"{why}\". It lists the DNAT maps \
             (concatenated data, address . port) but does not take them as input, so the \
             `nftables` crate cannot load this layout with this nft at all.\n",
            sh("nft --version")
        )
        .unwrap();
    }
    if let Some(s) = fig.f("proxy.full_sync.10000") {
        targets.push((
            "10 000 services: full sync < 1 s".into(),
            secs(Some(s)),
            verdict(Some(s < 1.0)),
        ));
    }
    if let (Some(s), Some(t)) = (
        fig.f("proxy.full_sync.10000"),
        fig.f("proxy.nft_text.10000"),
    ) {
        targets.push((
            "10 000 services: full sync no slower than `nft -f` of the same table".into(),
            format!("{} against {}", secs(Some(s)), secs(Some(t))),
            verdict(Some(s <= t)),
        ));
    }
    if let Some(s) = fig.f("proxy.change.10000") {
        targets.push((
            "10 000 services: one endpoint change < 10 ms".into(),
            secs(Some(s)),
            verdict(Some(s < 0.010)),
        ));
    }
    if let (Some(a), Some(b)) = (fig.f("proxy.latency.maps.30000"), lat1) {
        targets.push((
            "connect latency at 30 000 services within 10 % of 1 service".into(),
            format!(
                "{} vs {} ({:+.1} %)",
                secs(Some(a)),
                secs(Some(b)),
                (a / b - 1.0) * 100.0
            ),
            verdict(Some(a <= 1.1 * b)),
        ));
    }

    // 3. Data path.
    writeln!(m, "## 3. Data path\n").unwrap();
    writeln!(
        m,
        "A real lab (2 nodes, busybox httpd pods): the client pod on node-1, the server pod on \
         node-2, a netlab Service in front of the server. iperf3 (one TCP stream, {} s) and a \
         1-byte TCP request/response round trip on an open connection (20 000 round trips, \
         like netperf TCP_RR), run from the host in the pods' network namespaces; medians of {} \
         alternating rounds. The bare veth pair joins two fresh namespaces: the physical limit \
         of one TCP stream through a veth here.\n",
        fig.f("datapath.secs").unwrap_or(5.0),
        fig.f("datapath.rounds").unwrap_or(3.0)
    )
    .unwrap();
    writeln!(
        m,
        "| path | throughput | % of direct | % of bare veth | round trip median | p99 |"
    )
    .unwrap();
    writeln!(m, "|---|---:|---:|---:|---:|---:|").unwrap();
    let direct = fig.f("datapath.direct.bps");
    let veth = fig.f("datapath.veth.bps");
    for (k, what) in [
        ("clusterip", "pod → clusterIP → pod"),
        ("direct", "pod → pod direct"),
        ("veth", "bare veth pair (limit)"),
    ] {
        let bps = fig.f(&format!("datapath.{k}.bps"));
        let pct = |base: Option<f64>| match (bps, base) {
            (Some(a), Some(b)) => format!("{:.1} %", a / b * 100.0),
            _ => "—".into(),
        };
        writeln!(
            m,
            "| {what} | {} | {} | {} | {} | {} |",
            bps.map(|b| format!("{:.2} Gbit/s", b / 1e9))
                .unwrap_or_else(|| "—".into()),
            pct(direct),
            pct(veth),
            secs(fig.f(&format!("datapath.{k}.rr"))),
            secs(fig.f(&format!("datapath.{k}.rr_p99"))),
        )
        .unwrap();
    }
    writeln!(m).unwrap();
    if let (Some(c), Some(d)) = (fig.f("datapath.clusterip.bps"), direct) {
        targets.push((
            "clusterIP throughput ≥ 90 % of direct pod-to-pod".into(),
            format!("{:.1} %", c / d * 100.0),
            verdict(Some(c >= 0.9 * d)),
        ));
    }

    // 4. Convergence and memory.
    writeln!(m, "## 4. Endpoint convergence and controller memory\n").unwrap();
    writeln!(m, "| what | median | p99 |").unwrap();
    writeln!(m, "|---|---:|---:|").unwrap();
    if let Some(c) = fig.f("convergence.kill.count") {
        writeln!(
            m,
            "| small lab (4 nginx pods): `kill -9` of a container → endpoint gone from both nodes' rules ({c} kills) | {} | {} |",
            secs(fig.f("convergence.kill.median")),
            secs(fig.f("convergence.kill.p99"))
        )
        .unwrap();
    }
    if let Some(c) = fig.f("convergence.trace.count") {
        writeln!(
            m,
            "| small lab: `netlab trace node/node-1 web` as a process, start → exit ({c} runs; `netlab get pods`: {} median) | {} | {} |",
            secs(fig.f("convergence.verb.median")),
            secs(fig.f("convergence.trace.median")),
            secs(fig.f("convergence.trace.p99"))
        )
        .unwrap();
        if let Some(t) = fig.f("convergence.trace.median") {
            targets.push((
                "`netlab trace` < 300 ms (median, start → result)".into(),
                secs(Some(t)),
                verdict(Some(t < 0.3)),
            ));
        }
    }
    if let Some(c) = fig.f("convergence.page.count") {
        writeln!(
            m,
            "| small lab: the lab's page (`netlab ui`, headless Chromium) shows a deleted pod's replacement, from the DELETE ({c} deletions; the API's watch delivers it in {} median, {} p99) | {} | {} |",
            secs(fig.f("convergence.page.api.median")),
            secs(fig.f("convergence.page.api.p99")),
            secs(fig.f("convergence.page.median")),
            secs(fig.f("convergence.page.p99"))
        )
        .unwrap();
        if let Some(t) = fig.f("convergence.page.median") {
            targets.push((
                "the lab's page updated < 1 s after a pod deletion (median)".into(),
                format!(
                    "{} (the API's watch: {})",
                    secs(Some(t)),
                    secs(fig.f("convergence.page.api.median"))
                ),
                verdict(Some(t < 1.0)),
            ));
        }
    }
    if let Some(c) = fig.f("scale.converge.count") {
        writeln!(
            m,
            "| scale lab ({} pods, {} services): `netlab delete pod` → endpoint gone from both nodes' rules, in all {} services the pod backs ({c} deletions) | {} | {} |",
            fig.f("scale.pods").unwrap_or(0.0),
            fig.f("scale.services").unwrap_or(0.0),
            fig.f("scale.converge.backed").unwrap_or(0.0),
            secs(fig.f("scale.converge.median")),
            secs(fig.f("scale.converge.p99"))
        )
        .unwrap();
    }
    if let (Some(f), Some(r)) = (fig.f("convergence.failed"), fig.f("convergence.requests")) {
        writeln!(
            m,
            "\nFailed requests of a steady client while {} pods were deleted one by one: {f} of {r}.",
            fig.f("convergence.deleted").unwrap_or(0.0)
        )
        .unwrap();
    }
    if fig.f("scale.controller.hwm").is_some() {
        writeln!(
            m,
            "\nThe lab's controller process at {} pods and {} services: VmRSS {} right after `up`, {} 15 s later (target 250 MiB), {} after the deletions; peak (VmHWM) {}.\n",
            fig.f("scale.pods").unwrap_or(0.0),
            fig.f("scale.services").unwrap_or(0.0),
            mib(fig.f("scale.controller.rss_up")),
            mib(fig.f("scale.controller.rss_settled")),
            mib(fig.f("scale.controller.rss")),
            mib(fig.f("scale.controller.hwm")),
        )
        .unwrap();
        if let Some(settled) = fig.f("scale.controller.rss_settled") {
            targets.push((
                "the scale lab's process: VmRSS < 250 MiB (15 s after `up`)".into(),
                format!(
                    "{} (peak {})",
                    mib(Some(settled)),
                    mib(fig.f("scale.controller.hwm"))
                ),
                verdict(Some(settled < 250.0 * 1048576.0)),
            ));
        }
    }

    // 5. Scale.
    writeln!(
        m,
        "## 5. Scale: a lab of {} pods and {} services\n",
        fig.f("scale.pods").unwrap_or(1000.0),
        fig.f("scale.services").unwrap_or(10000.0)
    )
    .unwrap();
    if let Some(up) = fig.f("scale.up") {
        let served = (
            fig.f("scale.served_services").unwrap_or(0.0),
            fig.f("scale.sampled_services").unwrap_or(0.0),
            fig.f("scale.served_pods").unwrap_or(0.0),
            fig.f("scale.sampled_pods").unwrap_or(0.0),
        );
        writeln!(
            m,
            "2 nodes (`podCIDRMaskSize: 22`), {} busybox httpd pods ({} Deployments of 2), {} \
             Services of 2 endpoints each, the cluster DNS on.\n\n\
             | what | figure |\n|---|---:|\n\
             | `netlab up` (every pod running and accepting) | {} |\n\
             | pods running | {} |\n\
             | clusterIPs answering (a sample, curl from node-1) | {} of {} |\n\
             | pod IPs answering (a sample) | {} of {} |\n\
             | `netlab down` | {} |\n\
             | left behind after `down` (namespaces, `/run/netlab/<lab>`, mounts, cgroups) | {} |\n",
            fig.f("scale.pods").unwrap_or(0.0),
            fig.f("scale.pods").unwrap_or(0.0) / 2.0,
            fig.f("scale.services").unwrap_or(0.0),
            secs(Some(up)),
            fig.f("scale.running").unwrap_or(0.0),
            served.0,
            served.1,
            served.2,
            served.3,
            secs(fig.f("scale.down")),
            match fig.f("scale.leftovers") {
                Some(0.0) => "nothing".to_string(),
                Some(n) => format!("{n} objects"),
                None => "—".into(),
            }
        )
        .unwrap();
        writeln!(
            m,
            "The pods run with `enableServiceLinks: false`, as they must in Kubernetes at this \
             scale: 10 000 services in a namespace make 70 000 service variables per pod, about \
             3 MB of environment, more than execve accepts. Convergence here is the time \
             `netlab delete pod` takes to recompute every Service's Endpoints (each selector \
             against every pod), load and write the lab's state file (about 20 MB of JSON) and \
             sync both nodes' rules: it grows with services × pods, where the 4-pod lab above \
             stays at tens of ms.\n"
        )
        .unwrap();
        let ok = fig.f("scale.leftovers") == Some(0.0)
            && served.0 == served.1
            && served.2 == served.3
            && served.1 > 0.0;
        targets.push((
            format!(
                "a lab of {} pods and {} services comes up, serves, tears down leaving nothing",
                fig.f("scale.pods").unwrap_or(0.0),
                fig.f("scale.services").unwrap_or(0.0)
            ),
            format!(
                "up {}, down {}, {}/{} services and {}/{} pods answered",
                secs(Some(up)),
                secs(fig.f("scale.down")),
                served.0,
                served.1,
                served.2,
                served.3
            ),
            verdict(Some(ok)),
        ));
        start_section(fig, &mut m, &mut targets, up);
    } else {
        writeln!(m, "Not measured in this run.\n").unwrap();
    }

    // 6. The Kubernetes API.
    api_section(fig, &mut m, &mut targets);
    // 7. The pod streams.
    streams_section(fig, &mut m, &mut targets);
    // 8. The cluster DNS.
    dns_section(fig, &mut m, &mut targets);
    // 9. NetworkPolicy.
    netpol_section(fig, &mut m, &mut targets);

    let mut head = String::new();
    writeln!(head, "## Targets\n").unwrap();
    writeln!(head, "| target | measured | |").unwrap();
    writeln!(head, "|---|---|---|").unwrap();
    for (t, v, ok) in &targets {
        writeln!(head, "| {t} | {v} | {ok} |").unwrap();
    }
    writeln!(head).unwrap();
    // Targets right after the chart.
    let at = m.find("## 1.").unwrap_or(m.len());
    m.insert_str(at, &head);
    m
}

fn chart(fig: &Figures, path: &std::path::Path) {
    let root = SVGBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE).unwrap();
    let panels = root.split_evenly((2, 2));
    let colors = [
        RGBColor(31, 119, 180),
        BLACK,
        RGBColor(255, 127, 14),
        RGBColor(214, 39, 40),
    ];
    let pods = sizes(fig, "podnet.netlab.up.");

    // Pod network: bring-up and teardown, log scale.
    for (panel, (phase, title, legend)) in panels.iter().zip([
        (
            "up",
            "pod network bring-up (s, log)",
            SeriesLabelPosition::LowerRight,
        ),
        (
            "down",
            "pod network teardown (s, log)",
            SeriesLabelPosition::MiddleRight,
        ),
    ]) {
        let vals: Vec<f64> = METHODS
            .iter()
            .flat_map(|(k, _)| {
                pods.iter()
                    .filter_map(move |n| fig.f(&format!("podnet.{k}.{phase}.{n}")))
            })
            .collect();
        if vals.is_empty() {
            continue;
        }
        let lo = vals.iter().cloned().fold(f64::MAX, f64::min) / 2.0;
        let hi = vals.iter().cloned().fold(0.0, f64::max) * 2.0;
        let xmax = *pods.last().unwrap() as f64 * 1.05;
        let mut c = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..xmax, (lo..hi).log_scale())
            .unwrap();
        c.configure_mesh()
            .x_desc("pods")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.3}"))
            .draw()
            .unwrap();
        for ((k, label), color) in METHODS.iter().zip(colors) {
            let pts: Vec<(f64, f64)> = pods
                .iter()
                .filter_map(|&n| {
                    fig.f(&format!("podnet.{k}.{phase}.{n}"))
                        .map(|v| (n as f64, v))
                })
                .collect();
            if pts.is_empty() {
                continue;
            }
            c.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .unwrap()
                .label(label.replace('`', ""))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            c.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                .unwrap();
        }
        c.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(legend)
            .draw()
            .unwrap();
    }

    // Proxy: full sync and endpoint change against services.
    let svc = sizes(fig, "proxy.full_sync.");
    if !svc.is_empty() {
        let xmax = *svc.last().unwrap() as f64 * 1.05;
        let vals: Vec<f64> = svc
            .iter()
            .flat_map(|n| {
                [
                    fig.f(&format!("proxy.full_sync.{n}")),
                    fig.f(&format!("proxy.change.{n}")),
                ]
            })
            .flatten()
            .map(|v| v * 1e3)
            .collect();
        let lo = vals.iter().cloned().fold(f64::MAX, f64::min) / 2.0;
        let hi = vals.iter().cloned().fold(0.0, f64::max) * 2.0;
        let mut c = ChartBuilder::on(&panels[2])
            .caption("service rules on a node (ms, log)", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..xmax, (lo..hi).log_scale())
            .unwrap();
        c.configure_mesh()
            .x_desc("services")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.2}"))
            .draw()
            .unwrap();
        for ((key, label), color) in [
            ("full_sync", "full sync"),
            ("change", "one endpoint change"),
        ]
        .into_iter()
        .zip([colors[0], colors[3]])
        {
            let pts: Vec<(f64, f64)> = svc
                .iter()
                .filter_map(|&n| {
                    fig.f(&format!("proxy.{key}.{n}"))
                        .map(|v| (n as f64, v * 1e3))
                })
                .collect();
            c.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .unwrap()
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            c.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                .unwrap();
        }
        c.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .unwrap();
    }

    // Data path: throughput bars.
    let bars: Vec<(&str, f64)> = [
        ("clusterIP", "datapath.clusterip.bps"),
        ("pod→pod", "datapath.direct.bps"),
        ("bare veth", "datapath.veth.bps"),
    ]
    .into_iter()
    .filter_map(|(l, k)| fig.f(k).map(|v| (l, v / 1e9)))
    .collect();
    if !bars.is_empty() {
        let hi = bars.iter().map(|b| b.1).fold(0.0, f64::max) * 1.2;
        let mut c = ChartBuilder::on(&panels[3])
            .caption("data path throughput (Gbit/s, iperf3)", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..bars.len() as f64, 0f64..hi)
            .unwrap();
        let labels: Vec<String> = bars.iter().map(|b| b.0.to_string()).collect();
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(bars.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = (*x - 0.5).round();
                if (x - 0.5 - i).abs() < 0.01 && i >= 0.0 && (i as usize) < labels.len() {
                    labels[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .draw()
            .unwrap();
        c.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            Rectangle::new(
                [(i as f64 + 0.2, 0.0), (i as f64 + 0.8, *v)],
                colors[i % colors.len()].filled(),
            )
        }))
        .unwrap();
        c.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            Text::new(
                format!("{v:.2}"),
                (i as f64 + 0.4, *v + hi * 0.03),
                ("sans-serif", 16),
            )
        }))
        .unwrap();
    }
    root.present().unwrap();
}

/// Section 5's second half: what starting the pods' containers costs.
fn start_section(
    fig: &Figures,
    m: &mut String,
    targets: &mut Vec<(String, String, &'static str)>,
    up: f64,
) {
    let Some(per_pod) = fig.f("scale.start.per_pod") else {
        return;
    };
    let (pods, small) = (
        fig.f("scale.pods").unwrap_or(0.0),
        fig.f("scale.small.pods").unwrap_or(0.0),
    );
    let floor = fig.f("scale.floor.per_container");
    writeln!(
        m,
        "### Starting the containers\n\n\
         Per-pod start cost: the lab's process logs how long it took from its first container \
         start to its last, divided here by the pods (8 start at a time). netlab starts each \
         container from a fresh copy of a mount namespace that holds none of the lab's pod \
         mounts, with only that container's rootfs and network namespace carried in \
         (`net::MountNs`), and keeps the lab's directory on a tmpfs of its own. The baseline is \
         the start path before (`NETLAB_START_MOUNTS=host`: runc started from the host's mount \
         namespace, where every pod adds its rootfs and its `/run/netns` file). runc's floor: \
         {} bare `runc run -d` of one of the lab's pod bundles (a fresh overlay of the same \
         layers, a network namespace made beforehand and a cgroup each), 8 at a time, each \
         from a fresh mount namespace holding only its rootfs and network namespace: runc \
         alone, without netlab's bundle, overlay and log work.\n\n\
         | start path | pods | `netlab up` | per-pod start | `netlab down` |\n|---|---:|---:|---:|---:|\n\
         | netlab | {small} | {} | {} | {} |\n\
         | netlab | {pods} | {} | {} | {} |\n\
         | baseline: runc from the host's mount namespace | {small} | {} | {} | {} |\n\
         | baseline: runc from the host's mount namespace | {pods} | {} | {} | {} |\n\
         | runc's floor (bare `runc run -d`) | | | {} | |\n",
        fig.f("scale.floor.count").unwrap_or(0.0),
        secs(fig.f("scale.start.small.up")),
        secs(fig.f("scale.start.small.per_pod")),
        secs(fig.f("scale.start.small.down")),
        secs(Some(up)),
        secs(Some(per_pod)),
        secs(fig.f("scale.down")),
        secs(fig.f("scale.start.host.small.up")),
        secs(fig.f("scale.start.host.small.per_pod")),
        secs(fig.f("scale.start.host.small.down")),
        secs(fig.f("scale.start.host.up")),
        secs(fig.f("scale.start.host.per_pod")),
        secs(fig.f("scale.start.host.down")),
        secs(floor),
    )
    .unwrap();
    for (key, v) in fig.0.iter() {
        let Some(name) = key
            .strip_prefix("scale.floor.")
            .and_then(|k| k.strip_suffix(".per_container"))
        else {
            continue;
        };
        writeln!(
            m,
            "{name}'s floor, the same way (`NETLAB_BENCH_SCALE_RUNTIMES`): {} a container \
             ({} against runc's).\n",
            secs(v.as_f64()),
            ratio(v.as_f64(), floor),
        )
        .unwrap();
    }
    if let Some(median) = fig.f("scale.serving.median") {
        writeln!(
            m,
            "One more pod in the lab of {pods} (created through the API; timed until a TCP \
             connect to its port 80 from node-1 succeeds; {} pods): median {}, p99 {}.\n",
            fig.f("scale.serving.count").unwrap_or(0.0),
            secs(Some(median)),
            secs(fig.f("scale.serving.p99")),
        )
        .unwrap();
    }
    let floor_lab = floor.map(|f| f * pods);
    // Where runc alone takes longer than the target, the target cannot be
    // met with it on this machine: the row says so, beside the floor.
    let beyond_runc = up >= 10.0 && floor_lab.is_some_and(|f| f >= 10.0);
    targets.push((
        "the scale lab up < 10 s".to_string(),
        format!(
            "{} (runc's floor alone for {pods} containers on this machine: {})",
            secs(Some(up)),
            secs(floor_lab)
        ),
        if beyond_runc {
            "**missed**: runc's floor alone exceeds it"
        } else {
            verdict(Some(up < 10.0))
        },
    ));
    if let Some(down) = fig.f("scale.down") {
        targets.push((
            "the scale lab down < 3 s".into(),
            secs(Some(down)),
            verdict(Some(down < 3.0)),
        ));
    }
    let small_cost = fig.f("scale.start.small.per_pod");
    targets.push((
        format!("per-pod start at {pods} pods within 1.2 × that at {small}"),
        format!(
            "{} against {} ({}; baseline: {} against {})",
            secs(Some(per_pod)),
            secs(small_cost),
            ratio(Some(per_pod), small_cost),
            secs(fig.f("scale.start.host.per_pod")),
            secs(fig.f("scale.start.host.small.per_pod")),
        ),
        verdict(small_cost.map(|s| per_pod <= 1.2 * s)),
    ));
}

/// Section 6: the lab's Kubernetes API and its baselines.
fn api_section(fig: &Figures, m: &mut String, targets: &mut Vec<(String, String, &'static str)>) {
    writeln!(m, "## 6. The Kubernetes API\n").unwrap();
    let Some(pods) = fig.f("api.pods") else {
        writeln!(m, "Not measured in this run.\n").unwrap();
        return;
    };
    writeln!(
        m,
        "A lab of {pods} busybox httpd pods (one Deployment, 2 nodes), up in {}. A kube-rs client \
         from `netlab kubeconfig` (with TCP_NODELAY, as client-go's) on one kept-alive HTTPS \
         connection; GET and LIST are raw requests (the body read whole, not decoded); {} GETs, \
         {} per LIST, {} per write, after a warm-up. Watch delivery: a watch on one ConfigMap is \
         open while it is merge patched; the time from the PATCH's response to the MODIFIED \
         event of that resourceVersion (0 when the event came first: {} of {}), and from the \
         request's start. A write is answered after the lab's process committed it (the \
         event goes out then) and converged the host to it (`converge::change`, under the \
         lab's lock): the writes' times are mostly that step, and an event before its \
         answer is the rule.\n",
        secs(fig.f("api.up")),
        fig.f("api.rounds").unwrap_or(0.0),
        fig.f("api.list_rounds").unwrap_or(0.0),
        fig.f("api.write_rounds").unwrap_or(0.0),
        fig.f("api.watch.before_ack").unwrap_or(0.0),
        fig.f("api.write_rounds").unwrap_or(0.0),
    )
    .unwrap();
    writeln!(m, "| operation | p50 | p99 |").unwrap();
    writeln!(m, "|---|---:|---:|").unwrap();
    let kib = |k: &str| {
        fig.f(k)
            .map(|b| format!(" ({:.0} KiB)", b / 1024.0))
            .unwrap_or_default()
    };
    for (key, what) in [
        ("api.get", "GET one pod".to_string()),
        (
            "api.list.json",
            format!("LIST {pods} pods, JSON{}", kib("api.list.json.bytes")),
        ),
        (
            "api.list.table",
            format!("LIST {pods} pods, Table{}", kib("api.list.table.bytes")),
        ),
        ("api.create", "CREATE a ConfigMap".into()),
        ("api.patch", "PATCH (merge) a ConfigMap".into()),
        ("api.delete", "DELETE a ConfigMap".into()),
        (
            "api.watch",
            "watch delivery: write acknowledged → event".into(),
        ),
        (
            "api.watch.from_request",
            "watch delivery: write sent → event".into(),
        ),
        (
            "api.pod_start",
            "pod create → Running (cached image; time to the watch event)".into(),
        ),
    ] {
        writeln!(
            m,
            "| {what} | {} | {} |",
            secs(fig.f(&format!("{key}.p50"))),
            secs(fig.f(&format!("{key}.p99")))
        )
        .unwrap();
    }
    let table = fig.f("api.list.table.p50");
    let kubectl = fig.f("api.kubectl_get_pods");
    let netlab = fig.f("api.netlab_get_pods");
    writeln!(
        m,
        "\nBaselines in the same run. As processes (median, warm; the in-process LIST as a \
         Table is the request they make):\n\n\
         | command | time | ÷ LIST as a Table in-process |\n|---|---:|---:|\n\
         | `kubectl get pods` (`/usr/bin/kubectl`, standalone kubeconfig) | {} | {} |\n\
         | `netlab get pods` | {} | {} |\n\n\
         `kubectl get pods` ÷ `netlab get pods`: {}.\n",
        secs(kubectl),
        ratio(kubectl, table),
        secs(netlab),
        ratio(netlab, table),
        ratio(kubectl, netlab),
    )
    .unwrap();
    let (new, old) = (
        fig.f("api.store.commit.p50"),
        fig.f("api.oldfile.persist.p50"),
    );
    writeln!(
        m,
        "One object changed (an annotation of a pod) in the lab's state of {} objects, \
         in-process, interleaved, in one directory under `/run`: the redb store's `commit` \
         (diff by hash, one durable transaction) against the whole-file store it replaced \
         (`ClusterState` as pretty JSON, {}, to a 0600 temp file renamed over `state.json`, \
         as `ClusterState::persist` did before b5f329a; no fsync).\n\n\
         | store | p50 | p99 |\n|---|---:|---:|\n\
         | redb store, `commit` | {} | {} |\n\
         | whole file, `persist` | {} | {} |\n\
         | whole file, read and parse (every verb did it first) | {} | {} |\n\n\
         Whole-file persist ÷ store commit: {} (median).\n",
        fig.f("api.store.objects").unwrap_or(0.0),
        mib(fig.f("api.oldfile.bytes")),
        secs(new),
        secs(fig.f("api.store.commit.p99")),
        secs(old),
        secs(fig.f("api.oldfile.persist.p99")),
        secs(fig.f("api.oldfile.load.p50")),
        secs(fig.f("api.oldfile.load.p99")),
        ratio(old, new),
    )
    .unwrap();
    writeln!(
        m,
        "The lab's process: VmRSS {} after `up`, {} after the run; peak (VmHWM) {}. \
         `down` {}; left behind: {}.\n",
        mib(fig.f("api.rss_up")),
        mib(fig.f("api.rss_end")),
        mib(fig.f("api.hwm")),
        secs(fig.f("api.down")),
        match fig.f("api.leftovers") {
            Some(0.0) => "nothing".to_string(),
            Some(n) => format!("{n} objects"),
            None => "—".into(),
        }
    )
    .unwrap();
    let at = if pods == 1000.0 {
        String::new()
    } else {
        format!(" (measured at {pods} pods)")
    };
    if let Some(g) = fig.f("api.get.p99") {
        targets.push((
            format!("API: GET one pod p99 < 2 ms{at}"),
            secs(Some(g)),
            verdict(Some(g < 0.002)),
        ));
    }
    if let Some(t) = table {
        targets.push((
            format!("API: LIST 1 000 pods as a Table < 50 ms (median){at}"),
            format!(
                "{} (p99 {})",
                secs(Some(t)),
                secs(fig.f("api.list.table.p99"))
            ),
            verdict(Some(t < 0.050)),
        ));
    }
    if let Some(w) = fig.f("api.watch.p99") {
        targets.push((
            format!("API: watch delivery p99 < 5 ms{at}"),
            format!(
                "{} ({} of {} events before the write's answer; write sent → event p99 {})",
                secs(Some(w)),
                fig.f("api.watch.before_ack").unwrap_or(0.0),
                fig.f("api.write_rounds").unwrap_or(0.0),
                secs(fig.f("api.watch.from_request.p99"))
            ),
            verdict(Some(w < 0.005)),
        ));
    }
    if let Some(p) = fig.f("api.pod_start.p50") {
        targets.push((
            format!("API: pod create → Running < 150 ms (median, cached image){at}"),
            format!(
                "{} (p99 {})",
                secs(Some(p)),
                secs(fig.f("api.pod_start.p99"))
            ),
            verdict(Some(p < 0.150)),
        ));
    }
}

/// Section 8: the cluster DNS against dnsmasq, in the same namespace.
fn dns_section(fig: &Figures, m: &mut String, targets: &mut Vec<(String, String, &'static str)>) {
    writeln!(m, "## 8. The cluster DNS\n").unwrap();
    let Some(base) = fig.f("dns.dnsmasq.qps") else {
        writeln!(m, "Not measured in this run.\n").unwrap();
        return;
    };
    writeln!(
        m,
        "A queries for one Service's name from {:.0} client threads on the node, each with one \
         query in flight (closed loop), {:.0} s per server (load {:.2}). The baseline is \
         dnsmasq serving the same name from the coredns pod's namespace, on its IP.\n\n\
         | server | queries/s | p50 | p99 | errors | q/s vs dnsmasq |\n|---|---:|---:|---:|---:|---:|",
        fig.f("dns.clients").unwrap_or(0.0),
        fig.f("dns.seconds").unwrap_or(0.0),
        fig.f("dns.load").unwrap_or(f64::NAN),
    )
    .unwrap();
    for (key, what) in [
        ("pod", "netlab DNS, at the pod IP"),
        ("service", "netlab DNS, through kube-dns 10.0.0.10 (DNAT)"),
        ("dnsmasq", "dnsmasq (baseline), at the pod IP"),
    ] {
        let qps = fig.f(&format!("dns.{key}.qps"));
        writeln!(
            m,
            "| {what} | {:.0} | {} | {} | {:.0} | {} |",
            qps.unwrap_or(f64::NAN),
            secs(fig.f(&format!("dns.{key}.p50"))),
            secs(fig.f(&format!("dns.{key}.p99"))),
            fig.f(&format!("dns.{key}.errors")).unwrap_or(f64::NAN),
            ratio(qps, Some(base)),
        )
        .unwrap();
    }
    writeln!(
        m,
        "\nAn answer follows a new Service (apply returned → its name resolves): median {}, max {}.\n",
        secs(fig.f("dns.follow.median")),
        secs(fig.f("dns.follow.max")),
    )
    .unwrap();
    let (qps, p99, base_p99) = (
        fig.f("dns.pod.qps"),
        fig.f("dns.pod.p99"),
        fig.f("dns.dnsmasq.p99"),
    );
    if let Some(q) = qps {
        targets.push((
            "dns: ≥ 1.2 × dnsmasq's queries per second".into(),
            ratio(Some(q), Some(base)),
            verdict(Some(q >= 1.2 * base)),
        ));
    }
    if let (Some(p), Some(b)) = (p99, base_p99) {
        targets.push((
            "dns: p99 ≤ dnsmasq's".into(),
            format!("{} against {}", secs(Some(p)), secs(Some(b))),
            verdict(Some(p <= b)),
        ));
    }
}

/// Section 9: NetworkPolicy's cost per connection, and how soon it acts.
fn netpol_section(
    fig: &Figures,
    m: &mut String,
    targets: &mut Vec<(String, String, &'static str)>,
) {
    writeln!(m, "## 9. NetworkPolicy\n").unwrap();
    let Some(base) = fig.f("netpol.latency.p0") else {
        writeln!(m, "Not measured in this run.\n").unwrap();
        return;
    };
    writeln!(
        m,
        "Connect latency from a client pod to its namespace's server pod (one node, load {:.2}; \
         {:.0} interleaved rounds of 50 connects), the server selected by 0, 100 and 1 000 \
         policies of its namespace, each allowing port 80 from its own label (the client has \
         the last one's); the baseline is the same 1 000 policies as one linear chain of rules \
         in a sibling table, the client's last.\n\n\
         | server selected by | median | p99 | vs 0 |\n|---|---:|---:|---:|",
        fig.f("netpol.load").unwrap_or(f64::NAN),
        fig.f("netpol.rounds").unwrap_or(0.0),
    )
    .unwrap();
    for (key, what) in [
        ("p0", "0 policies"),
        ("p100", "100 policies"),
        ("p1000", "1 000 policies"),
        ("plin", "1 000 policies, linear chain (baseline)"),
    ] {
        let v = fig.f(&format!("netpol.latency.{key}"));
        writeln!(
            m,
            "| {what} | {} | {} | {} |",
            secs(v),
            secs(fig.f(&format!("netpol.latency_p99.{key}"))),
            ratio(v, Some(base)),
        )
        .unwrap();
    }
    writeln!(
        m,
        "\nFrom kubectl's return to the verdict on the node ({:.0} rounds; the first probe, \
         0.2 ms after kubectl exits, already sees it when the median is that small):\n\n\
         | change | median | max |\n|---|---:|---:|",
        fig.f("netpol.changes").unwrap_or(0.0)
    )
    .unwrap();
    for (key, what) in [
        ("apply", "`kubectl apply` of a deny-all policy → rejected"),
        ("delete", "`kubectl delete` of it → passes"),
        (
            "unlabel",
            "`kubectl label` of the client out of the peers → rejected",
        ),
        ("label", "`kubectl label` back → passes"),
    ] {
        writeln!(
            m,
            "| {what} | {} | {} |",
            secs(fig.f(&format!("netpol.change.{key}"))),
            secs(fig.f(&format!("netpol.change_max.{key}"))),
        )
        .unwrap();
    }
    writeln!(m).unwrap();
    if fig.f("netpol.recompute.p0").is_some() {
        writeln!(
            m,
            "The policy twin's work after one pod's label change, in process (no kernel), 1 000 \
             pods on 2 nodes in 10 namespaces: every policy resolved again, each node's table \
             made again, and the diff to the table as applied (median of 5):\n\n\
             | policies | recompute |\n|---|---:|"
        )
        .unwrap();
        for n in ["0", "100", "1000"] {
            writeln!(
                m,
                "| {n} | {} |",
                secs(fig.f(&format!("netpol.recompute.p{n}")))
            )
            .unwrap();
        }
        writeln!(m).unwrap();
    }
    let worst = ["p100", "p1000"]
        .iter()
        .filter_map(|k| fig.f(&format!("netpol.latency.{k}")))
        .fold(f64::NAN, f64::max);
    if !worst.is_nan() {
        targets.push((
            "netpol: connect latency with 100 and 1 000 policies within 10 % of 0".into(),
            format!("{} (worst) against {}", secs(Some(worst)), secs(Some(base))),
            verdict(Some(worst <= 1.1 * base)),
        ));
    }
    if let Some(a) = fig.f("netpol.change.apply") {
        targets.push((
            "netpol: kubectl apply of a policy → enforced, median < 50 ms".into(),
            secs(Some(a)),
            verdict(Some(a < 0.05)),
        ));
    }
}

/// Section 7: exec and port-forward through the lab's API, and their floors.
fn streams_section(
    fig: &Figures,
    m: &mut String,
    targets: &mut Vec<(String, String, &'static str)>,
) {
    writeln!(m, "## 7. The pod streams: exec and port-forward\n").unwrap();
    let Some(execs) = fig.f("streams.execs") else {
        writeln!(m, "Not measured in this run.\n").unwrap();
        return;
    };
    let (floor, api) = (
        fig.f("streams.exec.runc.p50"),
        fig.f("streams.exec.api.p50"),
    );
    writeln!(
        m,
        "One busybox httpd pod on one node (load {:.2}). `runc exec CONTAINER true` on the lab's \
         runc root is the floor; `pods/exec` of the same command from an in-process kube-rs \
         client (WebSocket, v5.channel.k8s.io), interleaved, {execs} rounds each.\n\n\
         | exec of `true` | p50 | p99 |\n|---|---:|---:|\n\
         | `runc exec` (floor) | {} | {} |\n\
         | `pods/exec`, WebSocket, in process | {} | {} |\n\n\
         API − floor (median): {}.\n",
        fig.f("streams.load").unwrap_or(f64::NAN),
        secs(floor),
        secs(fig.f("streams.exec.runc.p99")),
        secs(api),
        secs(fig.f("streams.exec.api.p99")),
        secs(api.zip(floor).map(|(a, f)| a - f)),
    )
    .unwrap();
    writeln!(
        m,
        "As kubectl runs it (medians of {} processes each): `kubectl get pod` is the process's \
         own start, kubeconfig and one GET, what `exec` does before its stream.\n\n\
         | kubectl | `get pod` | `exec -- true` | exec − get |\n|---|---:|---:|---:|",
        fig.f("streams.procs").unwrap_or(0.0)
    )
    .unwrap();
    let spaced = fig.f("streams.exec.runc_spaced.p50");
    if let Some(sp) = spaced {
        writeln!(
            m,
            "The floor for kubectl is `runc exec` measured as kubectl's exec meets it: after a \
             kubectl process, not right behind another exec: {} (p99 {}), against {} back to \
             back. Joining the container's cgroup-v1 hierarchies waits for an RCU grace period \
             (`rcu_sync_enter` from `cgroup_procs_write_start`, seen with `perf record -e \
             sched:sched_switch -g`) unless another join came just before; a lone exec pays it, \
             whoever starts runc.\n",
            secs(Some(sp)),
            secs(fig.f("streams.exec.runc_spaced.p99")),
            secs(floor),
        )
        .unwrap();
    }
    let kubectl_floor = spaced.or(floor);
    let mut costs = Vec::new();
    for (key, what) in [
        ("spdy", "1.27 (SPDY/3.1)"),
        ("websocket", "newest (WebSocket)"),
    ] {
        let get = fig.f(&format!("streams.kubectl.{key}.get"));
        let exec = fig.f(&format!("streams.kubectl.{key}.exec"));
        let cost = get.zip(exec).map(|(g, e)| e - g);
        costs.push((what, cost));
        writeln!(
            m,
            "| {what} | {} | {} | {} |",
            secs(get),
            secs(exec),
            secs(cost)
        )
        .unwrap();
    }
    let (pf, direct) = (
        fig.f("streams.pf.bytes_per_sec"),
        fig.f("streams.direct.bytes_per_sec"),
    );
    let mbs = |v: Option<f64>| {
        v.map(|b| format!("{:.0} MB/s", b / 1e6))
            .unwrap_or("—".into())
    };
    writeln!(
        m,
        "\nport-forward: a {} MiB file by curl through `kubectl port-forward` on the host's \
         loopback, against curl from the pod's node to the pod's address (best of each): \
         {} against {} ({}).\n",
        fig.f("streams.mib").unwrap_or(0.0),
        mbs(pf),
        mbs(direct),
        ratio(pf, direct),
    )
    .unwrap();
    if let (Some(a), Some(f)) = (api, floor) {
        targets.push((
            "streams: exec within 10 ms of runc exec (WebSocket, in process, median)".into(),
            format!("{} over {}", secs(Some(a - f)), secs(Some(f))),
            verdict(Some(a - f < 0.010)),
        ));
    }
    for (what, cost) in costs {
        if let (Some(c), Some(f)) = (cost, kubectl_floor) {
            targets.push((
                format!("streams: kubectl {what} exec − get within 10 ms of runc exec (spaced)"),
                format!("{} against {}", secs(Some(c)), secs(Some(f))),
                verdict(Some(c - f < 0.010)),
            ));
        }
    }
    if let (Some(p), Some(d)) = (pf, direct) {
        targets.push((
            "streams: port-forward ≥ 50 % of direct throughput".into(),
            format!("{} of {}", mbs(Some(p)), mbs(Some(d))),
            verdict(Some(p >= 0.5 * d)),
        ));
    }
}
