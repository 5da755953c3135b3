//! The seccomp profile netlab gives `seccompProfile: RuntimeDefault`.
//!
//! containerd's real default profile is an allowlist of ~350 syscalls kept
//! in sync with the kernel; no crate ships it, and a hand copy would rot.
//! This is its *denylist* reading instead: everything is allowed except the
//! syscalls Docker documents as "significant syscalls blocked by the
//! default profile", and, as in containerd's profile, a group comes back
//! when the container holds the capability that guards it (mount with
//! SYS_ADMIN, ptrace with SYS_PTRACE, …). A blocked call fails with EPERM.
//! It confines what matters for a lab (no mounts, no kernel modules, no
//! new namespaces, no keyrings, no clock changes); it is not a byte-exact
//! copy of containerd's filter, and README.md says so.

use oci_spec::runtime::{Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSyscall};
use std::collections::HashSet;

const EPERM: u32 = 1;

/// (the capability that allows them, or None: always blocked; syscalls)
const BLOCKED: &[(Option<Capability>, &[&str])] = &[
    (
        None,
        &[
            "add_key",
            "keyctl",
            "request_key",
            "kexec_file_load",
            "kexec_load",
            "open_by_handle_at",
            "userfaultfd",
            "uselib",
            "ustat",
            "_sysctl",
            "sysfs",
            "create_module",
            "get_kernel_syms",
            "query_module",
            "nfsservctl",
            "vm86",
            "vm86old",
            "kcmp",
            "perf_event_open",
            "lookup_dcookie",
            "bpf",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "move_mount",
            "open_tree",
        ],
    ),
    (
        Some(Capability::SysAdmin),
        &[
            "mount",
            "umount",
            "umount2",
            "unshare",
            "setns",
            "pivot_root",
            "quotactl",
            "swapon",
            "swapoff",
            "name_to_handle_at",
            "setdomainname",
            "sethostname",
        ],
    ),
    (
        Some(Capability::SysModule),
        &["init_module", "finit_module", "delete_module"],
    ),
    (
        Some(Capability::SysPtrace),
        &["ptrace", "process_vm_readv", "process_vm_writev"],
    ),
    (
        Some(Capability::SysTime),
        &[
            "settimeofday",
            "stime",
            "clock_settime",
            "clock_adjtime",
            "adjtimex",
        ],
    ),
    (Some(Capability::SysBoot), &["reboot"]),
    (Some(Capability::SysPacct), &["acct"]),
    (Some(Capability::SysRawio), &["iopl", "ioperm"]),
    (
        Some(Capability::SysNice),
        &["get_mempolicy", "set_mempolicy", "mbind", "move_pages"],
    ),
];

/// The profile for a container that holds `caps`.
pub fn runtime_default(caps: &HashSet<Capability>) -> LinuxSeccomp {
    let names: Vec<String> = BLOCKED
        .iter()
        .filter(|(allowed_by, _)| !allowed_by.is_some_and(|c| caps.contains(&c)))
        .flat_map(|(_, names)| names.iter().map(|n| n.to_string()))
        .collect();
    let mut rule = LinuxSyscall::default();
    rule.set_names(names);
    rule.set_action(LinuxSeccompAction::ScmpActErrno);
    rule.set_errno_ret(Some(EPERM));
    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActAllow);
    profile.set_syscalls(Some(vec![rule]));
    profile
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(caps: &[Capability]) -> Vec<String> {
        let p = runtime_default(&caps.iter().copied().collect());
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActAllow);
        p.syscalls().clone().unwrap()[0].names().clone()
    }

    #[test]
    fn capabilities_open_their_syscalls() {
        let cases: &[(&[Capability], &str, bool)] = &[
            (&[], "mount", true),
            (&[], "unshare", true),
            (&[], "keyctl", true),
            (&[], "ptrace", true),
            (&[], "read", false),
            (&[Capability::SysAdmin], "mount", false),
            (&[Capability::SysAdmin], "keyctl", true),
            (&[Capability::SysPtrace], "ptrace", false),
            (&[Capability::SysTime], "clock_settime", false),
        ];
        for (caps, name, want) in cases {
            assert_eq!(
                blocked(caps).iter().any(|n| n == name),
                *want,
                "{name} with {caps:?}"
            );
        }
    }
}
