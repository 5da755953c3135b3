//! Per-namespace sysctls.
//!
//! `/proc/sys/net/...` is resolved against the network namespace of the
//! *calling thread* at open time, so the file is opened and written while
//! the thread is inside the target namespace (see `NetNs::hop`). Only
//! `net.*` keys are accepted: everything else under /proc/sys is global and
//! writing it would change the host.

use std::io::{Read, Write};
use std::path::PathBuf;

use super::error::NetError;
use super::netns::NetNs;

/// Set `key` (e.g. `net.ipv4.ip_forward`) to `value` inside `ns`.
pub fn set(ns: &NetNs, key: &str, value: &str) -> Result<(), NetError> {
    let path = path_of(key)?;
    ns.hop(|| {
        let mut f = std::fs::OpenOptions::new().write(true).open(&path)?;
        f.write_all(value.as_bytes())
    })
    .map_err(|e| reword(e, "setting", ns, key))
}

/// Read `key` inside `ns` (trailing newline removed).
pub fn get(ns: &NetNs, key: &str) -> Result<String, NetError> {
    let path = path_of(key)?;
    ns.hop(|| {
        let mut s = String::new();
        std::fs::File::open(&path)?.read_to_string(&mut s)?;
        Ok(s.trim_end().to_string())
    })
    .map_err(|e| reword(e, "reading", ns, key))
}

fn reword(e: NetError, op: &'static str, ns: &NetNs, key: &str) -> NetError {
    match e {
        NetError::Os { source, .. } => {
            NetError::os(op, format!("sysctl {key} in netns {}", ns.name()), source)
        }
        other => other,
    }
}

/// `net.ipv4.ip_forward` → `/proc/sys/net/ipv4/ip_forward`. Like sysctl(8),
/// a key that already uses `/` is taken as is (interface names may contain dots).
pub(crate) fn path_of(key: &str) -> Result<PathBuf, NetError> {
    let rel = if key.contains('/') {
        key.to_string()
    } else {
        key.replace('.', "/")
    };
    let ok = rel.starts_with("net/")
        && rel.split('/').all(|c| !c.is_empty() && c != "..")
        && !rel.contains('\0');
    if !ok {
        return Err(NetError::refused(
            "set",
            format!("sysctl {key}"),
            "only per-namespace net.* sysctls are allowed",
        ));
    }
    Ok(PathBuf::from("/proc/sys").join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_proc_paths() {
        assert_eq!(
            path_of("net.ipv4.ip_forward").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
        assert!(path_of("kernel.hostname").is_err());
        assert!(path_of("net..ipv4").is_err());
        assert!(path_of("net/../kernel/x").is_err());
        assert_eq!(
            path_of("net/ipv4/conf/eth0.100/rp_filter").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/rp_filter")
        );
    }
}
