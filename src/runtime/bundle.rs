//! The OCI runtime spec (`config.json`) of a container, as a kubelet + CRI
//! runtime would make it from the pod spec and the image config. Pure except
//! for reading the image's `/etc/passwd` for a named user.

use k8s_openapi::api::core::v1::Container;
use oci_spec::image::Config as ImageConfig;
use oci_spec::runtime::{
    Capability, LinuxCapabilitiesBuilder, LinuxNamespace, LinuxNamespaceType, Mount, MountBuilder,
    ProcessBuilder, RootBuilder, Spec, UserBuilder,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Everything the spec needs to know about one container of a pod.
#[derive(Debug, Clone)]
pub struct ContainerSpec<'a> {
    /// The pod's hostname (UTS name and `$HOSTNAME`): the node's for a
    /// hostNetwork pod.
    pub hostname: &'a str,
    pub container: &'a Container,
    pub image: &'a ImageConfig,
    /// The mounted rootfs (overlay) of this container.
    pub rootfs: &'a Path,
    /// The pod's network namespace (`/run/netns/netlab-…`), shared by all
    /// its containers; its node's for a hostNetwork pod.
    pub netns: &'a Path,
    /// `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf` written for the pod.
    pub etc_files: &'a [(PathBuf, &'static str)],
    pub cgroups_path: String,
    /// The kubelet's service variables (`MY_NGINX_SERVICE_HOST`, …).
    pub service_env: &'a [(String, String)],
    /// The container's volumes (secret, configMap, emptyDir directories).
    pub mounts: &'a [BindMount],
}

/// A host directory bind-mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("container {container}: {message}")]
    Invalid { container: String, message: String },
}

/// What the container runs: Kubernetes' rules over the image's Entrypoint/Cmd
/// (`command` replaces Entrypoint and drops Cmd; `args` replaces Cmd).
pub fn process_args(c: &Container, image: &ImageConfig, env: &[String]) -> Vec<String> {
    let entrypoint = image.entrypoint().clone().unwrap_or_default();
    let cmd = image.cmd().clone().unwrap_or_default();
    let expand_all = |v: &Vec<String>| v.iter().map(|a| expand(a, env)).collect::<Vec<_>>();
    match (&c.command, &c.args) {
        (Some(command), Some(args)) => [expand_all(command), expand_all(args)].concat(),
        (Some(command), None) => expand_all(command),
        (None, Some(args)) => [entrypoint, expand_all(args)].concat(),
        (None, None) => [entrypoint, cmd].concat(),
    }
}

/// The environment: the image's, the service variables, `HOSTNAME` (as CRI
/// runtimes set it), then the container's `env` in order, later names
/// replacing earlier ones (explicit `env` wins) and `$(VAR)` expanded
/// against what came before.
pub fn process_env(
    c: &Container,
    image: &ImageConfig,
    hostname: &str,
    service_env: &[(String, String)],
) -> Vec<String> {
    let mut env = EnvList::new(image.env().clone().unwrap_or_default());
    for (k, v) in service_env {
        env.set(k, v);
    }
    env.set("HOSTNAME", hostname);
    if c.tty == Some(true) {
        // As containerd gives a container with a terminal.
        env.set("TERM", "xterm");
    }
    for e in c.env.iter().flatten() {
        let value = expand(e.value.as_deref().unwrap_or(""), &env.vars);
        env.set(&e.name, &value);
    }
    env.vars
}

/// `NAME=value` entries in order, with an index by name: a namespace of
/// 10 000 services gives each pod 70 000 service variables, and finding
/// each name by a scan made building one pod's environment take seconds.
struct EnvList {
    vars: Vec<String>,
    at: std::collections::HashMap<String, usize>,
}

impl EnvList {
    fn new(vars: Vec<String>) -> EnvList {
        let mut at = std::collections::HashMap::new();
        for (i, e) in vars.iter().enumerate() {
            if let Some((k, _)) = e.split_once('=') {
                // The first entry of a name is the one `set` replaces.
                at.entry(k.to_string()).or_insert(i);
            }
        }
        EnvList { vars, at }
    }

    fn set(&mut self, name: &str, value: &str) {
        let entry = format!("{name}={value}");
        match self.at.get(name) {
            Some(&i) => self.vars[i] = entry,
            None => {
                self.at.insert(name.to_string(), self.vars.len());
                self.vars.push(entry);
            }
        }
    }
}

/// Kubernetes' `$(VAR)` expansion: known names are replaced, `$$` escapes,
/// unknown references stay as written.
pub fn expand(input: &str, env: &[String]) -> String {
    let lookup = |name: &str| {
        env.iter().rev().find_map(|e| {
            let (k, v) = e.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    };
    let mut out = String::new();
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => out.push_str(&format!("$({name})")),
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str(&rest[i..]);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// containerd's default capability set, which is what pods get.
pub(crate) fn default_capabilities() -> HashSet<Capability> {
    use Capability::*;
    [
        Chown,
        DacOverride,
        Fsetid,
        Fowner,
        Mknod,
        NetRaw,
        Setgid,
        Setuid,
        Setfcap,
        Setpcap,
        NetBindService,
        SysChroot,
        Kill,
        AuditWrite,
    ]
    .into_iter()
    .collect()
}

/// Resolves the image's `User` (`""`, `uid`, `uid:gid`, `name`) in the rootfs.
/// The most of an image's /etc/passwd that is read.
const PASSWD_LIMIT: u64 = 1 << 20;

/// The image's /etc/passwd, resolved inside its root filesystem (a symlink to
/// a host path or to /dev/zero names a file of the image, never of the host)
/// and read only if it is a regular file of at most `PASSWD_LIMIT`. An image
/// without one has no users but numeric ones.
fn image_passwd(rootfs: &Path) -> Result<String, String> {
    use super::untrusted;
    let refused = |e: &dyn std::fmt::Display| {
        format!("cannot resolve the image's user: its /etc/passwd was refused: {e}")
    };
    let path = super::securejoin::secure_join(rootfs, Path::new("/etc/passwd"))
        .map_err(|e| refused(&e))?;
    match untrusted::read_regular(&path, PASSWD_LIMIT) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.is_not_found() => Ok(String::new()),
        Err(e) => Err(refused(&e)),
    }
}

fn resolve_user(user: &str, rootfs: &Path) -> Result<(u32, u32), String> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = user.split_once(':').unwrap_or((user, ""));
    let passwd = image_passwd(rootfs)?;
    let uid_gid = if let Ok(uid) = u.parse::<u32>() {
        let gid = passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() > 3 && f[2] == u)
            .and_then(|f| f[3].parse().ok())
            .unwrap_or(0);
        (uid, gid)
    } else {
        passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() > 3 && f[0] == u)
            .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .ok_or_else(|| format!("image user {u:?} is not in the image's /etc/passwd"))?
    };
    let gid = if g.is_empty() {
        uid_gid.1
    } else {
        g.parse()
            .map_err(|_| format!("image group {g:?} must be numeric"))?
    };
    Ok((uid_gid.0, gid))
}

#[cfg(test)]
mod user_tests {
    use super::resolve_user;
    use std::os::unix::fs::symlink;

    fn rootfs() -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        (d, root)
    }

    #[test]
    fn users_come_from_the_images_passwd() {
        let (_d, root) = rootfs();
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0::/:/bin/sh\nnginx:x:101:102::/:/bin/false\n",
        )
        .unwrap();
        assert_eq!(resolve_user("nginx", &root).unwrap(), (101, 102));
        assert_eq!(resolve_user("101", &root).unwrap(), (101, 102));
        assert_eq!(resolve_user("7:8", &root).unwrap(), (7, 8));
    }

    #[test]
    fn a_passwd_symlinked_to_a_host_file_is_read_inside_the_image() {
        let (d, root) = rootfs();
        // A host file with a user the image does not have.
        let host = d.path().join("host-passwd");
        std::fs::write(&host, "hostonly:x:4242:4242::/:/bin/sh\n").unwrap();
        symlink(&host, root.join("etc/passwd")).unwrap();
        let err = resolve_user("hostonly", &root).unwrap_err();
        assert!(err.contains("not in the image's /etc/passwd"), "{err}");
        // The same path inside the image is what counts.
        let inside = root.join(host.strip_prefix("/").unwrap());
        std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
        std::fs::write(&inside, "hostonly:x:5:6::/:/bin/sh\n").unwrap();
        assert_eq!(resolve_user("hostonly", &root).unwrap(), (5, 6));
    }

    #[test]
    fn a_passwd_that_is_a_device_or_huge_is_refused() {
        let (_d, root) = rootfs();
        // -> /dev/zero inside the image: resolved to rootfs/dev/zero, a
        // character device there is refused (not read forever).
        std::fs::create_dir_all(root.join("dev")).unwrap();
        nix::sys::stat::mknod(
            &root.join("dev/zero"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 5),
        )
        .or_else(|_| {
            nix::unistd::mkfifo(
                &root.join("dev/zero"),
                nix::sys::stat::Mode::from_bits_truncate(0o666),
            )
        })
        .unwrap();
        symlink("/dev/zero", root.join("etc/passwd")).unwrap();
        let start = std::time::Instant::now();
        let err = resolve_user("nginx", &root).unwrap_err();
        assert!(
            err.contains("refused") && err.contains("not a regular file"),
            "{err}"
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        std::fs::remove_file(root.join("etc/passwd")).unwrap();
        let big = std::fs::File::create(root.join("etc/passwd")).unwrap();
        big.set_len(super::PASSWD_LIMIT + 1).unwrap();
        let err = resolve_user("nginx", &root).unwrap_err();
        assert!(err.contains("larger than"), "{err}");
    }

    #[test]
    fn no_passwd_means_numeric_users_only() {
        let (_d, root) = rootfs();
        assert_eq!(resolve_user("1000", &root).unwrap(), (1000, 0));
        assert!(resolve_user("nginx", &root).is_err());
    }
}

pub fn runtime_spec(c: &ContainerSpec<'_>) -> Result<Spec, BundleError> {
    let bad = |message: String| BundleError::Invalid {
        container: c.container.name.clone(),
        message,
    };
    let env = process_env(c.container, c.image, c.hostname, c.service_env);
    let args = process_args(c.container, c.image, &env);
    if args.is_empty() {
        return Err(bad(
            "nothing to run: the image has no Entrypoint or Cmd and the container no command"
                .into(),
        ));
    }
    let cwd = c
        .container
        .working_dir
        .clone()
        .or_else(|| c.image.working_dir().clone())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "/".into());
    let (uid, gid) =
        resolve_user(c.image.user().as_deref().unwrap_or(""), c.rootfs).map_err(bad)?;
    let caps = default_capabilities();
    let process = ProcessBuilder::default()
        .terminal(c.container.tty.unwrap_or(false))
        .args(args)
        .env(env)
        .cwd(cwd)
        .user(
            UserBuilder::default()
                .uid(uid)
                .gid(gid)
                .build()
                .map_err(|e| bad(e.to_string()))?,
        )
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .build()
                .map_err(|e| bad(e.to_string()))?,
        )
        .no_new_privileges(false)
        .build()
        .map_err(|e| bad(e.to_string()))?;

    let mut spec = Spec::default();
    spec.set_hostname(Some(c.hostname.chars().take(63).collect()));
    spec.set_root(Some(
        RootBuilder::default()
            .path(c.rootfs)
            .readonly(false)
            .build()
            .map_err(|e| bad(e.to_string()))?,
    ));
    spec.set_process(Some(process));
    let mut mounts: Vec<Mount> = spec.mounts().clone().unwrap_or_default();
    for (source, dest) in c.etc_files {
        mounts.push(
            MountBuilder::default()
                .destination(*dest)
                .typ("bind")
                .source(source)
                .options(vec!["rbind".to_string(), "rprivate".to_string()])
                .build()
                .map_err(|e| bad(e.to_string()))?,
        );
    }
    for m in c.mounts {
        let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
        if m.read_only {
            options.push("ro".into());
        }
        mounts.push(
            MountBuilder::default()
                .destination(&m.destination)
                .typ("bind")
                .source(&m.source)
                .options(options)
                .build()
                .map_err(|e| bad(e.to_string()))?,
        );
    }
    spec.set_mounts(Some(mounts));
    let linux = spec.linux_mut().as_mut().expect("default spec has linux");
    let namespaces: Vec<LinuxNamespace> = linux
        .namespaces()
        .clone()
        .unwrap_or_default()
        .into_iter()
        // cgroup namespaces on a v1 hierarchy confuse more than they help here.
        .filter(|ns| ns.typ() != LinuxNamespaceType::Cgroup)
        .map(|mut ns| {
            if ns.typ() == LinuxNamespaceType::Network {
                ns.set_path(Some(c.netns.to_path_buf()));
            }
            ns
        })
        .collect();
    linux.set_namespaces(Some(namespaces));
    linux.set_cgroups_path(Some(PathBuf::from(&c.cgroups_path)));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::EnvVar;

    fn image() -> ImageConfig {
        serde_json::from_str(
            r#"{"Entrypoint":["/docker-entrypoint.sh"],"Cmd":["nginx","-g","daemon off;"],"Env":["PATH=/usr/bin:/bin","NGINX=1"]}"#,
        )
        .unwrap()
    }

    fn container(command: Option<&[&str]>, args: Option<&[&str]>) -> Container {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
        Container {
            name: "c".into(),
            command: command.map(v),
            args: args.map(v),
            env: Some(vec![
                EnvVar {
                    name: "GREETING".into(),
                    value: Some("hello $(NGINX)".into()),
                    ..Default::default()
                },
                EnvVar {
                    name: "NGINX".into(),
                    value: Some("2".into()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }
    }

    #[test]
    fn kubernetes_command_rules() {
        let img = image();
        let env = vec!["X=1".to_string()];
        let a = |c: Container| process_args(&c, &img, &env).join(" ");
        assert_eq!(
            a(container(None, None)),
            "/docker-entrypoint.sh nginx -g daemon off;"
        );
        assert_eq!(a(container(Some(&["sleep"]), None)), "sleep");
        assert_eq!(a(container(None, Some(&["x"]))), "/docker-entrypoint.sh x");
        assert_eq!(
            a(container(Some(&["echo"]), Some(&["$(X)", "$$(X)", "$(Y)"]))),
            "echo 1 $(X) $(Y)"
        );
    }

    #[test]
    fn env_order_and_override() {
        let svc = [
            ("MY_SVC_SERVICE_HOST".to_string(), "10.0.0.7".to_string()),
            ("NGINX".to_string(), "svc".to_string()),
        ];
        let env = process_env(&container(None, None), &image(), "pod-a", &svc);
        assert_eq!(
            env,
            vec![
                "PATH=/usr/bin:/bin",
                "NGINX=2",
                "MY_SVC_SERVICE_HOST=10.0.0.7",
                "HOSTNAME=pod-a",
                "GREETING=hello svc"
            ]
        );
    }

    #[test]
    fn spec_joins_pod_netns_and_sets_hostname() {
        let c = container(None, None);
        let img = image();
        let spec = runtime_spec(&ContainerSpec {
            hostname: "my-nginx-abc-xyz12",
            container: &c,
            image: &img,
            rootfs: Path::new("/nonexistent/rootfs"),
            netns: Path::new("/run/netns/netlab-t.pod.default.p"),
            etc_files: &[(PathBuf::from("/run/x/hosts"), "/etc/hosts")],
            cgroups_path: "/netlab-t/c".into(),
            service_env: &[],
            mounts: &[BindMount {
                source: "/run/netlab/l/pods/default_p/volumes/v".into(),
                destination: "/etc/nginx/ssl".into(),
                read_only: true,
            }],
        })
        .unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["hostname"], "my-nginx-abc-xyz12");
        let ns = json["linux"]["namespaces"].as_array().unwrap();
        assert!(ns
            .iter()
            .any(|n| n["type"] == "network" && n["path"] == "/run/netns/netlab-t.pod.default.p"));
        assert!(!ns.iter().any(|n| n["type"] == "cgroup"));
        assert!(json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["destination"] == "/etc/hosts"));
        let ssl = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/etc/nginx/ssl")
            .unwrap();
        assert_eq!(
            ssl["options"],
            serde_json::json!(["rbind", "rprivate", "ro"])
        );
        assert_eq!(ssl["source"], "/run/netlab/l/pods/default_p/volumes/v");
        assert_eq!(json["linux"]["cgroupsPath"], "/netlab-t/c");
    }
}
