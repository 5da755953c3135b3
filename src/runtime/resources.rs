//! A container's resources (`cluster::resources`) as the cgroup values the
//! kubelet asks the runtime for (`linux.resources` of the OCI spec):
//! - memory: the limit, and swap equal to it (no swap, the kubelet's
//!   NoSwap behaviour on a node with swap accounting);
//! - cpu: shares from the request (`milli * 1024 / 1000`, at least 2, so a
//!   container without a request gets 2, as BestEffort pods do), and a CFS
//!   quota from the limit over a 100 ms period (at least 1 ms);
//! - pids: a lab-wide ceiling per container ([`DEFAULT_PIDS_LIMIT`]) that
//!   Kubernetes leaves unlimited by default, so that a fork bomb in a lab
//!   cannot take the host down.

use crate::cluster::resources::Resources;
use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

/// Processes (and threads) per container.
pub const DEFAULT_PIDS_LIMIT: i64 = 4096;
/// The kubelet's CFS period.
pub const CPU_PERIOD_US: u64 = 100_000;
const MIN_SHARES: u64 = 2;
const MIN_QUOTA_US: i64 = 1000;

/// The kubelet's `MilliCPUToShares`.
pub fn cpu_shares(request_milli: Option<i64>) -> u64 {
    match request_milli {
        Some(m) if m > 0 => ((m as u64) * 1024 / 1000).max(MIN_SHARES),
        _ => MIN_SHARES,
    }
}

/// The kubelet's `MilliCPUToQuota`.
pub fn cpu_quota(limit_milli: i64) -> i64 {
    (limit_milli * CPU_PERIOD_US as i64 / 1000).max(MIN_QUOTA_US)
}

/// `linux.resources` of the container, keeping what the spec already
/// says of devices.
pub fn linux_resources(r: &Resources, base: Option<LinuxResources>) -> LinuxResources {
    let mut out = base.unwrap_or_default();
    if let Some(limit) = r.limits.memory {
        let mut m = LinuxMemory::default();
        m.set_limit(Some(limit));
        m.set_swap(Some(limit));
        out.set_memory(Some(m));
    }
    let mut cpu = LinuxCpu::default();
    cpu.set_shares(Some(cpu_shares(r.requests.cpu_milli)));
    if let Some(limit) = r.limits.cpu_milli {
        cpu.set_quota(Some(cpu_quota(limit)));
        cpu.set_period(Some(CPU_PERIOD_US));
    }
    out.set_cpu(Some(cpu));
    let mut pids = LinuxPids::default();
    pids.set_limit(DEFAULT_PIDS_LIMIT);
    out.set_pids(Some(pids));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::resources::Amounts;

    #[test]
    fn kubelet_cgroup_values() {
        // (requests, limits) → (memory limit, shares, quota, period)
        let none = Amounts::default();
        let cases = [
            (none, none, (None, 2, None, None)),
            (
                Amounts {
                    cpu_milli: Some(250),
                    memory: Some(64 << 20),
                },
                Amounts {
                    cpu_milli: Some(500),
                    memory: Some(128 << 20),
                },
                (Some(128 << 20), 256, Some(50_000), Some(100_000)),
            ),
            (
                Amounts {
                    cpu_milli: Some(1),
                    memory: None,
                },
                Amounts {
                    cpu_milli: Some(1),
                    memory: None,
                },
                (None, 2, Some(1000), Some(100_000)),
            ),
            (
                Amounts {
                    cpu_milli: Some(2000),
                    memory: None,
                },
                none,
                (None, 2048, None, None),
            ),
        ];
        for (requests, limits, want) in cases {
            let r = linux_resources(&Resources { requests, limits }, None);
            let json = serde_json::to_value(&r).unwrap();
            let got = (
                r.memory().as_ref().and_then(|m| m.limit()),
                r.cpu().as_ref().and_then(|c| c.shares()).unwrap(),
                r.cpu().as_ref().and_then(|c| c.quota()),
                r.cpu().as_ref().and_then(|c| c.period()),
            );
            assert_eq!(got, want, "{requests:?} {limits:?}");
            assert_eq!(json["pids"]["limit"], DEFAULT_PIDS_LIMIT);
            if let Some(limit) = want.0 {
                assert_eq!(json["memory"]["swap"], limit, "no swap beyond the limit");
            }
        }
    }
}
