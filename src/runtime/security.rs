//! A container's effective securityContext (`cluster::security`) in OCI
//! terms, as containerd's CRI plugin writes it: the user and groups, the
//! capability sets (containerd's default set, then drop, then add, `ALL`
//! in either list), no_new_privs, a read-only root, privileged mode and
//! seccomp. [`resolve`] is pure; [`apply`] edits a spec; [`host_devices`]
//! is the one part that reads the host (`/dev`, for privileged containers).
//!
//! Seccomp: without a profile a container runs unconfined, which is the
//! kubelet's default. `RuntimeDefault` gets [`super::seccomp::runtime_default`].

use crate::cluster::security::{Effective, Seccomp, CAPABILITIES};
use oci_spec::runtime::{
    Capability, LinuxCapabilitiesBuilder, LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup,
    LinuxDeviceType, Spec,
};
use std::collections::HashSet;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecurityError {
    /// The kubelet's words (a CreateContainerConfigError).
    #[error("container has runAsNonRoot and image will run as root (pod: {pod:?}, container: {container})")]
    RunsAsRoot { pod: String, container: String },
    #[error("container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: {pod:?}, container: {container})")]
    NonNumericUser {
        user: String,
        pod: String,
        container: String,
    },
    #[error("container {container}: {message}")]
    Spec { container: String, message: String },
}

/// What the container's process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSecurity {
    pub uid: u32,
    pub gid: u32,
    /// Sorted and deduplicated (the kernel sorts them anyway).
    pub additional_gids: Vec<u32>,
    pub capabilities: HashSet<Capability>,
    pub no_new_privileges: bool,
    pub read_only_root: bool,
    pub privileged: bool,
    pub seccomp: Seccomp,
}

/// What is known of the image when its container is created.
#[derive(Debug, Clone, Copy)]
pub struct ImageUser<'a> {
    /// The image config's `User` as written (`""`, `101`, `nginx:nginx`).
    pub user: &'a str,
    /// That user resolved in the image (uid, gid).
    pub ids: (u32, u32),
    /// The image's `/etc/passwd` and `/etc/group` (empty when absent).
    pub passwd: &'a str,
    pub group: &'a str,
}

fn cap(name: &str) -> Option<Capability> {
    name.parse().ok()
}

/// Every capability the kernel knows (and oci-spec names).
pub fn all_capabilities() -> HashSet<Capability> {
    from_mask(u64::MAX)
}

/// The capabilities of a mask as /proc/PID/status prints them.
pub fn from_mask(mask: u64) -> HashSet<Capability> {
    CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1 << bit) != 0)
        .filter_map(|(_, n)| cap(n))
        .collect()
}

/// The bounding set of this process: what "all capabilities" means for a
/// privileged container (containerd's `WithAllCurrentCapabilities`); a
/// host or sandbox may hold fewer than the kernel knows.
pub fn current_capabilities() -> HashSet<Capability> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        })
        .map(from_mask)
        .unwrap_or_else(all_capabilities)
}

/// containerd's default set, then `drop`, then `add`, as its CRI plugin
/// does (`ALL` in `drop` empties the set first; `ALL` in `add`, or
/// `privileged`, gives `current`: every capability this process holds).
pub fn capabilities(e: &Effective, current: &HashSet<Capability>) -> HashSet<Capability> {
    if e.privileged {
        return current.clone();
    }
    let mut set = super::bundle::default_capabilities();
    if e.drop.iter().any(|d| d == "ALL") {
        set.clear();
    }
    for d in &e.drop {
        if let Some(c) = cap(d) {
            set.remove(&c);
        }
    }
    if e.add.iter().any(|a| a == "ALL") {
        return current.clone();
    }
    set.extend(e.add.iter().filter_map(|a| cap(a)));
    set
}

/// Name and primary gid of a uid in a passwd file.
fn passwd_entry(passwd: &str, uid: u32) -> Option<(&str, u32)> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[2].parse() == Ok(uid)).then(|| Some((f[0], f[3].parse().ok()?)))?
    })
}

/// The groups of /etc/group that list `name` as a member.
fn member_of(group: &str, name: &str) -> Vec<u32> {
    group
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[3].split(',').any(|m| m == name)).then(|| f[2].parse().ok())?
        })
        .collect()
}

/// The kubelet's and containerd's decisions for one container.
/// `pod` is `<name>_<namespace>(<uid>)`, as the kubelet names pods in messages.
pub fn resolve(
    e: &Effective,
    image: ImageUser<'_>,
    current: &HashSet<Capability>,
    pod: &str,
    container: &str,
) -> Result<ProcessSecurity, SecurityError> {
    // runAsUser replaces the image's user; its primary group is then the
    // image's passwd entry of that uid, or 0 (containerd's WithUserID).
    let (uid, primary) = match e.run_as_user {
        Some(u) => {
            let u = u as u32;
            (
                u,
                passwd_entry(image.passwd, u).map(|(_, g)| g).unwrap_or(0),
            )
        }
        None => image.ids,
    };
    let gid = e.run_as_group.map(|g| g as u32).unwrap_or(primary);
    if e.run_as_non_root {
        // The kubelet's verifyRunAsNonRoot: a named image user cannot be
        // checked, uid 0 is refused.
        let (user, _) = image.user.split_once(':').unwrap_or((image.user, ""));
        if e.run_as_user.is_none() && !user.is_empty() && user.parse::<u32>().is_err() {
            return Err(SecurityError::NonNumericUser {
                user: user.to_string(),
                pod: pod.to_string(),
                container: container.to_string(),
            });
        }
        if uid == 0 {
            return Err(SecurityError::RunsAsRoot {
                pod: pod.to_string(),
                container: container.to_string(),
            });
        }
    }
    // The primary group, the user's groups in the image's /etc/group, then
    // supplementalGroups and fsGroup.
    let mut gids = vec![gid];
    if let Some((name, _)) = passwd_entry(image.passwd, uid) {
        gids.extend(member_of(image.group, name));
    }
    gids.extend(e.supplemental_groups.iter().map(|g| *g as u32));
    gids.sort_unstable();
    gids.dedup();
    Ok(ProcessSecurity {
        uid,
        gid,
        additional_gids: gids,
        capabilities: capabilities(e, current),
        no_new_privileges: e.no_new_privs,
        read_only_root: e.read_only_root,
        privileged: e.privileged,
        seccomp: if e.privileged {
            Seccomp::Unconfined
        } else {
            e.seccomp
        },
    })
}

/// Writes `s` into a spec made by `bundle::runtime_spec`. A privileged
/// container gets `devices` (the host's, from [`host_devices`]), access to
/// every device, no masked or read-only paths and a writable /sys.
pub fn apply(
    spec: &mut Spec,
    s: &ProcessSecurity,
    devices: Vec<LinuxDevice>,
) -> Result<(), String> {
    let mut process = spec.process().clone().unwrap_or_default();
    let mut user = process.user().clone();
    user.set_uid(s.uid);
    user.set_gid(s.gid);
    user.set_additional_gids(Some(s.additional_gids.clone()));
    process.set_user(user);
    process.set_capabilities(Some(
        LinuxCapabilitiesBuilder::default()
            .bounding(s.capabilities.clone())
            .effective(s.capabilities.clone())
            .permitted(s.capabilities.clone())
            // containerd leaves these empty (CVE-2022-24769); oci-spec's
            // builder would fill them with its own defaults, and an ambient
            // capability outside the permitted set makes runc fail.
            .inheritable(HashSet::new())
            .ambient(HashSet::new())
            .build()
            .map_err(|e| e.to_string())?,
    ));
    process.set_no_new_privileges(Some(s.no_new_privileges));
    spec.set_process(Some(process));
    if let Some(root) = spec.root_mut() {
        root.set_readonly(Some(s.read_only_root));
    }
    if s.seccomp == Seccomp::RuntimeDefault {
        let profile = super::seccomp::runtime_default(&s.capabilities);
        if let Some(linux) = spec.linux_mut() {
            linux.set_seccomp(Some(profile));
        }
    }
    if s.privileged {
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        for m in mounts.iter_mut() {
            if m.destination() == Path::new("/sys") {
                let options = m.options().clone().unwrap_or_default();
                m.set_options(Some(options.into_iter().filter(|o| o != "ro").collect()));
            }
        }
        spec.set_mounts(Some(mounts));
        if let Some(linux) = spec.linux_mut() {
            linux.set_masked_paths(None);
            linux.set_readonly_paths(None);
            linux.set_devices(Some(devices));
            let mut resources = linux.resources().clone().unwrap_or_default();
            let mut allow = LinuxDeviceCgroup::default();
            allow.set_allow(true);
            allow.set_access(Some("rwm".into()));
            resources.set_devices(Some(vec![allow]));
            linux.set_resources(Some(resources));
        }
    }
    Ok(())
}

/// The host's device nodes, as containerd's `WithDevices` lists them for a
/// privileged container (below /dev, leaving out pseudo-terminals, shm and
/// mqueue, which the container has its own of).
pub fn host_devices() -> Vec<LinuxDevice> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut stack = vec![std::path::PathBuf::from("/dev")];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let path = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                let name = e.file_name();
                if !["pts", "shm", "mqueue", "fd"].contains(&name.to_string_lossy().as_ref()) {
                    stack.push(path);
                }
                continue;
            }
            let typ = if ft.is_char_device() {
                LinuxDeviceType::C
            } else if ft.is_block_device() {
                LinuxDeviceType::B
            } else {
                continue;
            };
            if path == Path::new("/dev/console") {
                continue; // runc sets up the container's own
            }
            let rdev = meta.rdev();
            if let Ok(d) = LinuxDeviceBuilder::default()
                .path(&path)
                .typ(typ)
                .major(nix::sys::stat::major(rdev) as i64)
                .minor(nix::sys::stat::minor(rdev) as i64)
                .file_mode(meta.mode() & 0o777)
                .uid(meta.uid())
                .gid(meta.gid())
                .build()
            {
                out.push(d);
            }
        }
    }
    out.sort_by(|a, b| a.path().cmp(b.path()));
    out
}

/// Constrains a container's spec (made by `bundle::runtime_spec`, whose
/// process user is the image's) by its pod's and its own securityContext
/// and resources. `pod` names the pod in messages (`name_namespace(uid)`).
/// Reads the image's /etc/passwd and /etc/group in `rootfs`, and the host's
/// /dev for a privileged container.
pub fn constrain(
    spec: &mut Spec,
    pod_spec: &k8s_openapi::api::core::v1::PodSpec,
    c: &k8s_openapi::api::core::v1::Container,
    image_user: &str,
    rootfs: &Path,
    pod: &str,
) -> Result<(), SecurityError> {
    let e = crate::cluster::security::effective(pod_spec, c);
    let ids = spec
        .process()
        .as_ref()
        .map(|p| (p.user().uid(), p.user().gid()))
        .unwrap_or((0, 0));
    let read = |f: &str| std::fs::read_to_string(rootfs.join(f)).unwrap_or_default();
    let (passwd, group) = (read("etc/passwd"), read("etc/group"));
    let s = resolve(
        &e,
        ImageUser {
            user: image_user,
            ids,
            passwd: &passwd,
            group: &group,
        },
        &current_capabilities(),
        pod,
        &c.name,
    )?;
    let devices = if s.privileged {
        host_devices()
    } else {
        Vec::new()
    };
    apply(spec, &s, devices).map_err(|message| SecurityError::Spec {
        container: c.name.clone(),
        message,
    })?;
    // Validated at load time; a quantity that slipped through counts as unset.
    let r = crate::cluster::resources::of(c).unwrap_or_default();
    if let Some(linux) = spec.linux_mut() {
        let base = linux.resources().clone();
        linux.set_resources(Some(super::resources::linux_resources(&r, base)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str =
        "root:x:0:\nnginx:x:101:\napp:x:1000:\nwheel:x:10:app,other\nvideo:x:44:other\n";

    fn image(user: &'static str, ids: (u32, u32)) -> ImageUser<'static> {
        ImageUser {
            user,
            ids,
            passwd: PASSWD,
            group: GROUP,
        }
    }

    fn names(s: &HashSet<Capability>) -> Vec<String> {
        let mut v: Vec<String> = s.iter().map(|c| c.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn users_and_groups() {
        // (effective, image, want (uid, gid, groups) or the error's start)
        /// (uid, gid, groups), or how the error starts.
        type Want = Result<(u32, u32, Vec<u32>), &'static str>;
        let cases: Vec<(Effective, ImageUser, Want)> = vec![
            (Effective::default(), image("", (0, 0)), Ok((0, 0, vec![0]))),
            (
                Effective::default(),
                image("nginx", (101, 101)),
                Ok((101, 101, vec![101])),
            ),
            (
                Effective {
                    run_as_user: Some(1000),
                    ..Default::default()
                },
                image("", (0, 0)),
                Ok((1000, 1000, vec![10, 1000])),
            ),
            (
                Effective {
                    run_as_user: Some(1000),
                    run_as_group: Some(3000),
                    supplemental_groups: vec![4000, 2000],
                    fs_group: Some(2000),
                    ..Default::default()
                },
                image("", (0, 0)),
                Ok((1000, 3000, vec![10, 2000, 3000, 4000])),
            ),
            (
                Effective {
                    run_as_user: Some(5555),
                    ..Default::default()
                },
                image("", (0, 0)),
                Ok((5555, 0, vec![0])),
            ),
            (
                Effective {
                    run_as_non_root: true,
                    ..Default::default()
                },
                image("", (0, 0)),
                Err("container has runAsNonRoot and image will run as root (pod: \"p_default(u)\", container: c)"),
            ),
            (
                Effective {
                    run_as_non_root: true,
                    run_as_user: Some(0),
                    ..Default::default()
                },
                image("101", (101, 101)),
                Err("container has runAsNonRoot and image will run as root"),
            ),
            (
                Effective {
                    run_as_non_root: true,
                    ..Default::default()
                },
                image("nginx", (101, 101)),
                Err("container has runAsNonRoot and image has non-numeric user (nginx)"),
            ),
            (
                Effective {
                    run_as_non_root: true,
                    ..Default::default()
                },
                image("101:101", (101, 101)),
                Ok((101, 101, vec![101])),
            ),
            (
                Effective {
                    run_as_non_root: true,
                    run_as_user: Some(1000),
                    ..Default::default()
                },
                image("nginx", (101, 101)),
                Ok((1000, 1000, vec![10, 1000])),
            ),
        ];
        for (i, (e, img, want)) in cases.into_iter().enumerate() {
            let got = resolve(&e, img, &all_capabilities(), "p_default(u)", "c");
            match (got, want) {
                (Ok(s), Ok((uid, gid, groups))) => {
                    assert_eq!(
                        (s.uid, s.gid, s.additional_gids),
                        (uid, gid, groups),
                        "case {i}"
                    )
                }
                (Err(e), Err(start)) => {
                    assert!(e.to_string().starts_with(start), "case {i}: {e}")
                }
                (got, want) => panic!("case {i}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn capability_sets() {
        let eff = |add: &[&str], drop: &[&str], privileged: bool| Effective {
            add: add.iter().map(|s| s.to_string()).collect(),
            drop: drop.iter().map(|s| s.to_string()).collect(),
            privileged,
            ..Default::default()
        };
        let default = names(&super::super::bundle::default_capabilities());
        assert_eq!(default.len(), 14);
        let cases: Vec<(Effective, Vec<&str>)> = vec![
            (eff(&[], &["ALL"], false), vec![]),
            (
                eff(&["NET_BIND_SERVICE"], &["ALL"], false),
                vec!["NET_BIND_SERVICE"],
            ),
            (
                eff(&["NET_ADMIN", "SYS_TIME"], &["NET_RAW", "CHOWN"], false),
                default
                    .iter()
                    .map(String::as_str)
                    .filter(|c| *c != "NET_RAW" && *c != "CHOWN")
                    .chain(["NET_ADMIN", "SYS_TIME"])
                    .collect(),
            ),
        ];
        let all = all_capabilities();
        for (e, mut want) in cases {
            want.sort();
            assert_eq!(names(&capabilities(&e, &all)), want, "{e:?}");
        }
        // Every name Kubernetes accepts is one oci-spec knows, in bit order.
        assert_eq!(all.len(), CAPABILITIES.len());
        assert_eq!(names(&from_mask(1 << 13)), ["NET_RAW"]);
        assert_eq!(names(&from_mask(1 << 31)), ["SETFCAP"]);
        assert_eq!(
            from_mask(0xa80425fb),
            super::super::bundle::default_capabilities()
        );
        // "All" is what this process holds (a sandbox may lack SYS_RESOURCE).
        let host = from_mask(0x1fffeffffff);
        assert_eq!(capabilities(&eff(&["ALL"], &[], false), &host), host);
        assert_eq!(capabilities(&eff(&[], &["ALL"], true), &host), host);
    }

    fn base_spec() -> Spec {
        let mut spec = Spec::default();
        let mut root = oci_spec::runtime::Root::default();
        root.set_path("/r".into());
        spec.set_root(Some(root));
        spec
    }

    #[test]
    fn spec_pieces() {
        let s = resolve(
            &Effective {
                run_as_user: Some(1000),
                run_as_group: Some(3000),
                supplemental_groups: vec![2000],
                no_new_privs: true,
                read_only_root: true,
                drop: vec!["ALL".into()],
                seccomp: Seccomp::RuntimeDefault,
                ..Default::default()
            },
            image("", (0, 0)),
            &all_capabilities(),
            "p",
            "c",
        )
        .unwrap();
        let mut spec = base_spec();
        apply(&mut spec, &s, Vec::new()).unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["process"]["user"]["uid"], 1000);
        assert_eq!(json["process"]["user"]["gid"], 3000);
        assert_eq!(
            json["process"]["user"]["additionalGids"],
            serde_json::json!([10, 2000, 3000])
        );
        assert_eq!(json["process"]["noNewPrivileges"], true);
        let caps = &json["process"]["capabilities"];
        assert_eq!(caps["effective"], serde_json::json!([]));
        for set in ["inheritable", "ambient"] {
            assert!(
                caps[set].is_null() || caps[set] == serde_json::json!([]),
                "{set}: {}",
                caps[set]
            );
        }
        assert_eq!(json["root"]["readonly"], true);
        assert_eq!(json["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
        assert!(json["linux"]["seccomp"]["syscalls"][0]["names"]
            .as_array()
            .unwrap()
            .contains(&"mount".into()));
        assert!(json["linux"]["maskedPaths"]
            .as_array()
            .is_some_and(|m| !m.is_empty()));

        let p = resolve(
            &Effective {
                privileged: true,
                seccomp: Seccomp::RuntimeDefault,
                ..Default::default()
            },
            image("", (0, 0)),
            &all_capabilities(),
            "p",
            "c",
        )
        .unwrap();
        let mut spec = base_spec();
        let null = LinuxDeviceBuilder::default()
            .path("/dev/null")
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(3)
            .build()
            .unwrap();
        apply(&mut spec, &p, vec![null]).unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert!(
            json["linux"]["seccomp"].is_null(),
            "privileged is unconfined"
        );
        assert!(json["linux"]["maskedPaths"].is_null());
        assert_eq!(json["linux"]["devices"][0]["path"], "/dev/null");
        assert_eq!(
            json["linux"]["resources"]["devices"],
            serde_json::json!([{"allow": true, "access": "rwm"}])
        );
        assert_eq!(
            json["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            CAPABILITIES.len()
        );
        let sys = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap();
        assert!(!sys["options"].as_array().unwrap().contains(&"ro".into()));
    }
}
