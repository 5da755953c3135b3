//! A container's securityContext as the kubelet sees it: the pod's and the
//! container's merged (the container's field wins where both can say it;
//! `fsGroup` and `supplementalGroups` exist only on the pod), and every
//! field netlab does not implement refused at load time instead of being
//! silently ignored. Pure: the OCI side is `runtime::security`.

use k8s_openapi::api::core::v1::{
    Container, PodSecurityContext, PodSpec, SeccompProfile, SecurityContext,
};

/// Linux capability names Kubernetes accepts (capabilities(7) without
/// `CAP_`), in the kernel's bit order: `CAPABILITIES[13]` is bit 13.
pub const CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The seccomp confinement of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Seccomp {
    /// No filter: the kubelet's default when no profile is given.
    #[default]
    Unconfined,
    /// The runtime's default profile.
    RuntimeDefault,
}

/// What one container runs with, after merging.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Effective {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: bool,
    /// The pod's `supplementalGroups`, then its `fsGroup` (as the kubelet adds it).
    pub supplemental_groups: Vec<i64>,
    pub fs_group: Option<i64>,
    pub privileged: bool,
    /// Capability names as written (`NET_RAW`, `ALL`).
    pub add: Vec<String>,
    pub drop: Vec<String>,
    /// `allowPrivilegeEscalation: false` sets no_new_privs.
    pub no_new_privs: bool,
    pub read_only_root: bool,
    pub seccomp: Seccomp,
}

fn seccomp_of(p: &SeccompProfile) -> Seccomp {
    match p.type_.as_str() {
        "RuntimeDefault" => Seccomp::RuntimeDefault,
        _ => Seccomp::Unconfined,
    }
}

/// The kubelet's `determineEffectiveSecurityContext`: pod-level defaults,
/// container-level overrides. Assumes [`validate`] passed.
pub fn effective(pod: &PodSpec, c: &Container) -> Effective {
    let p = pod.security_context.clone().unwrap_or_default();
    let s = c.security_context.clone().unwrap_or_default();
    let caps = s.capabilities.clone().unwrap_or_default();
    let mut supplemental = p.supplemental_groups.clone().unwrap_or_default();
    supplemental.extend(p.fs_group);
    Effective {
        run_as_user: s.run_as_user.or(p.run_as_user),
        run_as_group: s.run_as_group.or(p.run_as_group),
        run_as_non_root: s.run_as_non_root.or(p.run_as_non_root).unwrap_or(false),
        supplemental_groups: supplemental,
        fs_group: p.fs_group,
        privileged: s.privileged.unwrap_or(false),
        add: caps.add.unwrap_or_default(),
        drop: caps.drop.unwrap_or_default(),
        no_new_privs: s.allow_privilege_escalation == Some(false),
        read_only_root: s.read_only_root_filesystem.unwrap_or(false),
        seccomp: s
            .seccomp_profile
            .as_ref()
            .or(p.seccomp_profile.as_ref())
            .map(seccomp_of)
            .unwrap_or_default(),
    }
}

fn check_seccomp(p: &SeccompProfile, path: &str, bad: &mut Vec<String>) {
    match p.type_.as_str() {
        "RuntimeDefault" | "Unconfined" => {}
        "Localhost" => bad.push(format!(
            "{path}.seccompProfile.type Localhost is not supported by netlab (use RuntimeDefault or Unconfined)"
        )),
        other => bad.push(format!(
            "{path}.seccompProfile.type {other:?}: use RuntimeDefault, Unconfined or Localhost"
        )),
    }
    if p.localhost_profile.is_some() && p.type_ != "Localhost" {
        bad.push(format!(
            "{path}.seccompProfile.localhostProfile may only be set with type Localhost"
        ));
    }
}

fn check_id(v: Option<i64>, field: String, bad: &mut Vec<String>) {
    if let Some(id) = v {
        if !(0..=i64::from(u32::MAX - 1)).contains(&id) {
            bad.push(format!("{field}: {id} must be between 0 and 4294967294"));
        }
    }
}

fn pod_errors(p: &PodSecurityContext, path: &str, bad: &mut Vec<String>) {
    let path = format!("{path}.securityContext");
    check_id(p.run_as_user, format!("{path}.runAsUser"), bad);
    check_id(p.run_as_group, format!("{path}.runAsGroup"), bad);
    check_id(p.fs_group, format!("{path}.fsGroup"), bad);
    for (i, g) in p.supplemental_groups.iter().flatten().enumerate() {
        check_id(Some(*g), format!("{path}.supplementalGroups[{i}]"), bad);
    }
    if let Some(policy) = &p.fs_group_change_policy {
        // Both are what netlab does: it owns every volume file it writes.
        if !["Always", "OnRootMismatch"].contains(&policy.as_str()) {
            bad.push(format!(
                "{path}.fsGroupChangePolicy {policy:?}: use Always or OnRootMismatch"
            ));
        }
    }
    if let Some(s) = &p.seccomp_profile {
        check_seccomp(s, &path, bad);
    }
    let unsupported = [
        ("seLinuxOptions", p.se_linux_options.is_some()),
        ("seLinuxChangePolicy", p.se_linux_change_policy.is_some()),
        ("windowsOptions", p.windows_options.is_some()),
        ("sysctls", p.sysctls.is_some()),
        ("appArmorProfile", p.app_armor_profile.is_some()),
        (
            "supplementalGroupsPolicy",
            p.supplemental_groups_policy.is_some(),
        ),
    ];
    for (field, set) in unsupported {
        if set {
            bad.push(format!("{path}.{field} is not supported by netlab"));
        }
    }
}

fn container_errors(s: &SecurityContext, path: &str, bad: &mut Vec<String>) {
    let path = format!("{path}.securityContext");
    check_id(s.run_as_user, format!("{path}.runAsUser"), bad);
    check_id(s.run_as_group, format!("{path}.runAsGroup"), bad);
    if let Some(caps) = &s.capabilities {
        for (list, names) in [("add", &caps.add), ("drop", &caps.drop)] {
            for (i, n) in names.iter().flatten().enumerate() {
                if n != "ALL" && !CAPABILITIES.contains(&n.as_str()) {
                    let hint = match n.strip_prefix("CAP_") {
                        Some(short) if CAPABILITIES.contains(&short) => {
                            format!(" (write {short}, without CAP_)")
                        }
                        _ => String::new(),
                    };
                    bad.push(format!(
                        "{path}.capabilities.{list}[{i}] {n:?} is not a capability{hint}"
                    ));
                }
            }
        }
    }
    // The API server's own rule: no_new_privs cannot hold for a process
    // that is given everything.
    if s.allow_privilege_escalation == Some(false) {
        let sys_admin = s
            .capabilities
            .iter()
            .flat_map(|c| c.add.iter().flatten())
            .any(|n| n == "SYS_ADMIN" || n == "ALL");
        if s.privileged == Some(true) {
            bad.push(format!(
                "{path}: cannot set allowPrivilegeEscalation to false and privileged to true"
            ));
        } else if sys_admin {
            bad.push(format!(
                "{path}: cannot set allowPrivilegeEscalation to false and capabilities.Add CAP_SYS_ADMIN"
            ));
        }
    }
    if let Some(p) = &s.seccomp_profile {
        check_seccomp(p, &path, bad);
    }
    if let Some(m) = &s.proc_mount {
        if m != "Default" {
            bad.push(format!(
                "{path}.procMount {m:?} is not supported by netlab (only Default)"
            ));
        }
    }
    let unsupported = [
        ("seLinuxOptions", s.se_linux_options.is_some()),
        ("windowsOptions", s.windows_options.is_some()),
        ("appArmorProfile", s.app_armor_profile.is_some()),
    ];
    for (field, set) in unsupported {
        if set {
            bad.push(format!("{path}.{field} is not supported by netlab"));
        }
    }
}

/// Every securityContext problem of a pod spec at `path` (`spec`,
/// `spec.template.spec`), as the API server words them where it has a rule.
pub fn validate(pod: &PodSpec, path: &str) -> Vec<String> {
    let mut bad = Vec::new();
    if let Some(p) = &pod.security_context {
        pod_errors(p, path, &mut bad);
    }
    for (i, c) in pod.containers.iter().enumerate() {
        if let Some(s) = &c.security_context {
            container_errors(s, &format!("{path}.containers[{i}]"), &mut bad);
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Capabilities;

    fn pod(p: Option<PodSecurityContext>, s: Option<SecurityContext>) -> PodSpec {
        PodSpec {
            security_context: p,
            containers: vec![Container {
                name: "c".into(),
                security_context: s,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn container_wins_and_groups_come_from_the_pod() {
        let p = PodSecurityContext {
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            run_as_non_root: Some(true),
            fs_group: Some(2000),
            supplemental_groups: Some(vec![4000]),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = SecurityContext {
            run_as_user: Some(2001),
            run_as_non_root: Some(false),
            seccomp_profile: Some(SeccompProfile {
                type_: "Unconfined".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let cases = [
            (pod(None, None), Effective::default()),
            (
                pod(Some(p.clone()), None),
                Effective {
                    run_as_user: Some(1000),
                    run_as_group: Some(3000),
                    run_as_non_root: true,
                    supplemental_groups: vec![4000, 2000],
                    fs_group: Some(2000),
                    seccomp: Seccomp::RuntimeDefault,
                    ..Default::default()
                },
            ),
            (
                pod(Some(p), Some(s)),
                Effective {
                    run_as_user: Some(2001),
                    run_as_group: Some(3000),
                    run_as_non_root: false,
                    supplemental_groups: vec![4000, 2000],
                    fs_group: Some(2000),
                    seccomp: Seccomp::Unconfined,
                    ..Default::default()
                },
            ),
            (
                pod(
                    None,
                    Some(SecurityContext {
                        allow_privilege_escalation: Some(false),
                        read_only_root_filesystem: Some(true),
                        capabilities: Some(Capabilities {
                            add: Some(vec!["NET_ADMIN".into()]),
                            drop: Some(vec!["ALL".into()]),
                        }),
                        ..Default::default()
                    }),
                ),
                Effective {
                    no_new_privs: true,
                    read_only_root: true,
                    add: vec!["NET_ADMIN".into()],
                    drop: vec!["ALL".into()],
                    ..Default::default()
                },
            ),
        ];
        for (i, (spec, want)) in cases.into_iter().enumerate() {
            assert_eq!(effective(&spec, &spec.containers[0]), want, "case {i}");
        }
    }

    #[test]
    fn unsupported_and_invalid_fields_are_refused() {
        let localhost = SeccompProfile {
            type_: "Localhost".into(),
            localhost_profile: Some("x.json".into()),
        };
        let cases: Vec<(PodSpec, &str)> = vec![
            (
                pod(
                    Some(PodSecurityContext {
                        seccomp_profile: Some(localhost.clone()),
                        ..Default::default()
                    }),
                    None,
                ),
                "spec.securityContext.seccompProfile.type Localhost is not supported",
            ),
            (
                pod(
                    None,
                    Some(SecurityContext {
                        seccomp_profile: Some(localhost),
                        ..Default::default()
                    }),
                ),
                "spec.containers[0].securityContext.seccompProfile.type Localhost",
            ),
            (
                pod(
                    Some(PodSecurityContext {
                        sysctls: Some(vec![]),
                        ..Default::default()
                    }),
                    None,
                ),
                "spec.securityContext.sysctls is not supported",
            ),
            (
                pod(
                    None,
                    Some(SecurityContext {
                        capabilities: Some(Capabilities {
                            add: None,
                            drop: Some(vec!["CAP_NET_RAW".into()]),
                        }),
                        ..Default::default()
                    }),
                ),
                "capabilities.drop[0] \"CAP_NET_RAW\" is not a capability (write NET_RAW, without CAP_)",
            ),
            (
                pod(
                    None,
                    Some(SecurityContext {
                        privileged: Some(true),
                        allow_privilege_escalation: Some(false),
                        ..Default::default()
                    }),
                ),
                "cannot set allowPrivilegeEscalation to false and privileged to true",
            ),
            (
                pod(
                    None,
                    Some(SecurityContext {
                        run_as_user: Some(-1),
                        ..Default::default()
                    }),
                ),
                "spec.containers[0].securityContext.runAsUser: -1 must be between",
            ),
            (
                pod(
                    None,
                    Some(SecurityContext {
                        proc_mount: Some("Unmasked".into()),
                        ..Default::default()
                    }),
                ),
                "procMount \"Unmasked\" is not supported",
            ),
            (
                pod(
                    None,
                    Some(SecurityContext {
                        se_linux_options: Some(Default::default()),
                        ..Default::default()
                    }),
                ),
                "seLinuxOptions is not supported",
            ),
        ];
        for (spec, want) in cases {
            let errs = validate(&spec, "spec");
            assert!(
                errs.iter().any(|e| e.contains(want)),
                "want {want:?} in {errs:?}"
            );
        }
        let fine = pod(
            Some(PodSecurityContext {
                run_as_user: Some(1000),
                fs_group: Some(2000),
                fs_group_change_policy: Some("OnRootMismatch".into()),
                ..Default::default()
            }),
            Some(SecurityContext {
                privileged: Some(true),
                capabilities: Some(Capabilities {
                    add: Some(vec!["ALL".into()]),
                    drop: Some(vec!["NET_RAW".into()]),
                }),
                ..Default::default()
            }),
        );
        assert_eq!(validate(&fine, "spec"), Vec::<String>::new());
    }
}
