//! Pods as a kubelet runs them: per-pod files (`/etc/hosts`, hostname,
//! resolv.conf), an overlay rootfs and an OCI bundle per container, runc to
//! start them, and the status the API shows (`Running`, `1/1`, restarts).
//! Volumes (secret, configMap, emptyDir) are written before any container
//! starts; a pod whose volume cannot be set up (a missing Secret) waits in
//! `ContainerCreating` with a FailedMount event, and the controller retries.

use super::images::Outcomes;
use super::ControllerError;
use crate::cluster::volumes::{MountError, PodVolume};
use crate::cluster::{dns, host_network, state, ClusterState, Collection};
use crate::net::NetNs;
use crate::paths;
use crate::runtime::bundle::{self, BindMount, ContainerSpec};
use crate::runtime::stdio::Wants;
use crate::runtime::{rootfs, Image, Runc, Store};
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Pod, PodCondition, Secret, Service,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Containers started at once: runc start is mostly waiting on the kernel.
const START_CONCURRENCY: usize = 8;

/// Container pids by pod name, as started.
pub type Pids = HashMap<String, Vec<i32>>;

/// What the kubelet reads from the API server to start a pod's containers,
/// taken from the store when the start begins.
#[derive(Clone)]
pub struct Objects {
    pub services: Collection<Service>,
    pub config: crate::lab::LabConfig,
    pub secrets: Collection<Secret>,
    pub config_maps: Collection<ConfigMap>,
    pub service_accounts: Collection<k8s_openapi::api::core::v1::ServiceAccount>,
}

impl Objects {
    pub fn of(st: &ClusterState) -> Objects {
        Objects {
            services: st.services.clone(),
            config: st.config.clone(),
            secrets: st.secrets.clone(),
            config_maps: st.config_maps.clone(),
            service_accounts: st.service_accounts.clone(),
        }
    }
}

/// A token for the pod's ServiceAccount, as the kubelet asks
/// kube-apiserver for one (which fails while the account does not exist).
fn pod_token(
    lab: &str,
    pod: &Pod,
    objects: &Objects,
    projection: &k8s_openapi::api::core::v1::ServiceAccountTokenProjection,
) -> Result<Vec<u8>, String> {
    let keys = crate::api::tokens::for_lab(lab).ok_or("the lab's token key is not readable")?;
    let ns = state::namespace(&pod.metadata);
    let name = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let account = objects
        .service_accounts
        .iter()
        .find(|a| {
            a.metadata.name.as_deref() == Some(name.as_str()) && state::namespace(&a.metadata) == ns
        })
        .ok_or_else(|| format!("failed to fetch token: serviceaccounts {name:?} not found"))?;
    let account = crate::api::tokens::Ref {
        name,
        uid: account.metadata.uid.clone().unwrap_or_default(),
    };
    let mut meta = pod.metadata.clone();
    meta.namespace = Some(ns.to_string());
    let token = crate::api::tokens::for_pod(
        &keys.issuer,
        &meta,
        &account,
        projection,
        Utc::now().timestamp(),
    );
    Ok(token.into_bytes())
}

/// Plans a pod's volumes from the objects that exist now and writes them
/// under its directory (idempotent: unchanged files are left alone).
pub fn prepare_volumes(
    lab: &str,
    pod: &Pod,
    objects: &Objects,
) -> Result<Vec<PodVolume>, MountError> {
    let spec = pod.spec.clone().unwrap_or_default();
    let ns = state::namespace(&pod.metadata);
    let token = |p: &k8s_openapi::api::core::v1::ServiceAccountTokenProjection| {
        pod_token(lab, pod, objects, p)
    };
    let extra = crate::cluster::volumes::Projections {
        pod: &pod.metadata,
        token: &token,
    };
    let mut volumes = crate::cluster::volumes::plan(
        &spec,
        ns,
        &objects.secrets,
        &objects.config_maps,
        Some(&extra),
    )?;
    let fs_group = spec.security_context.as_ref().and_then(|s| s.fs_group);
    if fs_group.is_some() {
        crate::runtime::volumes::with_fs_group(&mut volumes);
    }
    let dir = paths::pod_dir(lab, ns, pod.metadata.name.as_deref().unwrap_or_default());
    crate::runtime::volumes::setup(&dir, &volumes)
        .and_then(|_| match fs_group {
            Some(g) => crate::runtime::volumes::chown_group(&dir, &volumes, g as u32),
            None => Ok(()),
        })
        .map_err(|e| MountError {
            volume: volumes.first().map(|v| v.name.clone()).unwrap_or_default(),
            message: format!("writing the volume's files: {e}"),
        })?;
    Ok(volumes)
}

/// The status of a container whose pod waits for its volumes: what
/// kubectl shows as `ContainerCreating` (no container exists yet).
pub fn creating(c: &Container) -> ContainerStatus {
    let mut cs = image_waiting(c, "ContainerCreating", "");
    cs.state = Some(ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some("ContainerCreating".into()),
            message: None,
        }),
        ..Default::default()
    });
    cs
}

/// Whether a container was never created because its pod's volumes could
/// not be set up (see [`creating`]) or its configuration refers to what
/// does not exist ([`resolve_env`]): the controller retries it.
pub fn waits_for_volumes(cs: &ContainerStatus) -> bool {
    let reason = cs
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.as_deref());
    cs.container_id.is_none()
        && matches!(
            reason,
            Some("ContainerCreating" | "CreateContainerConfigError")
        )
}

/// Records the kubelet's FailedMount event, at most every 10 s for the
/// same message (the kubelet backs off its retries likewise). True when
/// the store changed.
pub fn record_failed_mount(
    st: &mut ClusterState,
    pod: &Pod,
    e: &MountError,
    now: chrono::DateTime<Utc>,
) -> bool {
    record_throttled(st, pod, "FailedMount", &e.to_string(), now)
}

/// A kubelet warning about `pod`, recorded unless the same one was
/// recorded less than 10 s ago. True when the store changed.
fn record_throttled(
    st: &mut ClusterState,
    pod: &Pod,
    reason: &str,
    message: &str,
    now: chrono::DateTime<Utc>,
) -> bool {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let recent = st.events.iter().rev().any(|ev| {
        ev.involved_object.name.as_deref() == Some(name)
            && ev.reason.as_deref() == Some(reason)
            && ev.message.as_deref() == Some(message)
            && ev
                .last_timestamp
                .as_ref()
                .is_some_and(|t| now - t.0 < chrono::Duration::seconds(10))
    });
    if recent {
        return false;
    }
    let who = crate::cluster::events::involved("Pod", &pod.metadata);
    st.record(who, "Warning", reason, "kubelet", message, now);
    true
}

/// The container with its `envFrom`/`valueFrom` resolved from the objects
/// that exist now, or the status of a container that cannot be created
/// (the kubelet's CreateContainerConfigError, e.g. a missing Secret).
pub fn resolve_env(
    c: &Container,
    pod: &Pod,
    objects: &Objects,
) -> Result<Container, Box<ContainerStatus>> {
    crate::cluster::envvars::resolve_container(c, pod, &objects.secrets, &objects.config_maps)
        .map_err(|message| Box::new(image_waiting(c, "CreateContainerConfigError", &message)))
}

/// The message of a container that waits with CreateContainerConfigError.
pub fn config_error(pod: &Pod, container: &str) -> Option<String> {
    let cs = pod
        .status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .find(|cs| cs.name == container)?;
    let w = cs.state.as_ref()?.waiting.as_ref()?;
    (w.reason.as_deref() == Some("CreateContainerConfigError"))
        .then(|| w.message.clone().unwrap_or_default())
}

/// The kubelet's event for a container it cannot create, throttled as
/// [`record_failed_mount`].
pub fn record_config_error(
    st: &mut ClusterState,
    pod: &Pod,
    message: &str,
    now: chrono::DateTime<Utc>,
) -> bool {
    record_throttled(st, pod, "Failed", &format!("Error: {message}"), now)
}

/// Whether a pod was placed on a node but not started yet (a pod no node
/// could take is Pending too, but nothing of it is started: see
/// [`is_unscheduled`]).
pub fn is_pending(p: &Pod) -> bool {
    !is_unscheduled(p)
        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending")
        && p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_none()
}

/// Whether a pod waits for a node (the scheduler found none): it has no
/// network, no address and no containers.
pub fn is_unscheduled(p: &Pod) -> bool {
    state::pod_node(p).is_none()
}

/// Starts the containers of every pending pod in `state` (their network
/// exists). A container whose image could not be had stays waiting with the
/// reason (`ErrImagePull`, …) and its pod Pending; the controller retries.
pub async fn start_all(
    lab: &str,
    state: &mut ClusterState,
    store: &Store,
    images: &Outcomes,
    runc: &Runc,
) -> Result<Pids, ControllerError> {
    // Unpack each image once, before any pod needs it.
    let mut layers: HashMap<String, Vec<PathBuf>> = HashMap::new();
    for (reference, outcome) in images {
        let Ok(ready) = outcome else { continue };
        let (store, image) = (store.clone(), ready.image.clone());
        let dirs = tokio::task::spawn_blocking(move || store.unpacked_layers(&image))
            .await
            .expect("unpack task")?;
        layers.insert(reference.clone(), dirs);
    }
    // Service variables come from the services that exist now, when the
    // pod starts (the tutorial's ordering lesson); volumes likewise.
    let objects = Objects::of(state);
    // Not on a node a drill stopped: its kubelet is silent.
    let stopped = state.stopped_nodes();
    let silent = |p: &Pod| state::pod_node(p).is_some_and(|n| stopped.contains(n));
    // The others stay the objects they are (shared with the store's state:
    // copying them all made every pod look changed to the endpoints refresh).
    let (pods, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut state.pods)
        .into_shared()
        .into_iter()
        .partition(|p| is_pending(p) && !silent(p));
    state.pods = crate::cluster::Collection::from_shared(rest);
    let pods: Vec<Pod> = pods
        .into_iter()
        .map(std::sync::Arc::unwrap_or_clone)
        .collect();
    let started: Vec<Started> = futures::stream::iter(pods.into_iter().map(|pod| {
        let (layers, objects) = (&layers, &objects);
        async move { start_pod(lab, pod, images, layers, runc, objects).await }
    }))
    .buffered(START_CONCURRENCY)
    .try_collect()
    .await?;
    let mut pids = Pids::new();
    let now = Utc::now();
    for Started {
        pod,
        pids: p,
        complete,
        failed_mount,
    } in started
    {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let who = crate::cluster::events::involved("Pod", &pod.metadata);
        if let Some(e) = failed_mount {
            tracing::info!(pod = %name, error = %e, "waiting for volumes");
            record_failed_mount(state, &pod, &e, now);
            state.pods.push(pod);
            continue;
        }
        for c in pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .filter(|_| !dns::is_builtin(&pod))
        {
            let outcome = &super::images::for_container(images, c);
            super::images::record(state, &pod, c, outcome);
            if outcome.is_err() {
                continue;
            }
            if let Some(message) = config_error(&pod, &c.name) {
                record_config_error(state, &pod, &message, now);
                continue;
            }
            state.record_started(who.clone(), &c.name, now);
        }
        if complete {
            pids.insert(name, p);
        }
        state.pods.push(pod);
    }
    Ok(pids)
}

/// What [`start_pod`] did.
struct Started {
    pod: Pod,
    pids: Vec<i32>,
    /// Every container runs.
    complete: bool,
    /// Nothing started: a volume could not be set up.
    failed_mount: Option<MountError>,
}

/// Starts what it can of a pod: its volumes, then its containers.
async fn start_pod(
    lab: &str,
    mut pod: Pod,
    images: &Outcomes,
    layers: &HashMap<String, Vec<PathBuf>>,
    runc: &Runc,
    objects: &Objects,
) -> Result<Started, ControllerError> {
    if dns::is_builtin(&pod) {
        start_builtin(&mut pod);
        return Ok(Started {
            pod,
            pids: Vec::new(),
            complete: true,
            failed_mount: None,
        });
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let volumes = match prepare_volumes(lab, &pod, objects) {
        Ok(v) => v,
        Err(e) => {
            let status = pod.status.get_or_insert_with(Default::default);
            status.phase = Some("Pending".into());
            status.container_statuses = Some(spec.containers.iter().map(creating).collect());
            status.qos_class = Some(crate::cluster::resources::qos_class(&spec).into());
            set_conditions(&mut pod, false);
            return Ok(Started {
                pod,
                pids: Vec::new(),
                complete: false,
                failed_mount: Some(e),
            });
        }
    };
    let mut statuses = Vec::new();
    let mut pids = Vec::new();
    let mut started = 0;
    for c in &spec.containers {
        let reference = c.image.clone().unwrap_or_default();
        match &super::images::for_container(images, c) {
            Ok(ready) => {
                let c = match resolve_env(c, &pod, objects) {
                    Ok(c) => c,
                    Err(status) => {
                        statuses.push(*status);
                        continue;
                    }
                };
                let (pid, status) = match start_container(
                    lab,
                    &pod,
                    &c,
                    &ready.image,
                    &layers[&reference],
                    runc,
                    objects,
                    &volumes,
                )
                .await
                {
                    Err(ControllerError::ContainerConfig { message, .. }) => {
                        statuses.push(image_waiting(&c, "CreateContainerConfigError", &message));
                        continue;
                    }
                    other => other?,
                };
                pids.push(pid);
                started += 1;
                statuses.push(status);
            }
            Err(f) => statuses.push(image_waiting(c, f.reason, &f.message)),
        }
    }
    let complete = started == spec.containers.len();
    let status = pod.status.get_or_insert_with(Default::default);
    status.phase = Some(if complete { "Running" } else { "Pending" }.into());
    status.start_time = Some(state::time(Utc::now()));
    status.container_statuses = Some(statuses);
    status.qos_class = Some(crate::cluster::resources::qos_class(&spec).into());
    set_conditions(&mut pod, false);
    Ok(Started {
        pod,
        pids,
        complete,
        failed_mount: None,
    })
}

/// The status of a container waiting for its image.
pub fn image_waiting(c: &Container, reason: &str, message: &str) -> ContainerStatus {
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: String::new(),
        ready: false,
        started: Some(false),
        restart_count: 0,
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: Some(message.into()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Whether a container waits for its image (pull failed or backing off).
pub fn waits_for_image(cs: &ContainerStatus) -> bool {
    cs.state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.as_deref())
        .is_some_and(|r| {
            [
                "ErrImagePull",
                "ImagePullBackOff",
                "ErrImageNeverPull",
                "InvalidImageName",
            ]
            .contains(&r)
        })
}

/// Starts one container of a pod (its network and volumes exist): the
/// pod's files, an overlay rootfs over the image's layers, the OCI bundle
/// with the container's volume mounts, runc. Returns
/// its pid and its running status.
#[allow(clippy::too_many_arguments)] // the kubelet's inputs for one container
pub async fn start_container(
    lab: &str,
    pod: &Pod,
    c: &Container,
    image: &Image,
    layers: &[PathBuf],
    runc: &Runc,
    objects: &Objects,
    volumes: &[PodVolume],
) -> Result<(i32, ContainerStatus), ControllerError> {
    let config = &objects.config;
    let ns = state::namespace(&pod.metadata).to_string();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let object = format!("pod/{name}");
    let dir = paths::pod_dir(lab, &ns, &name);
    let io = |e: std::io::Error| ControllerError::Pod {
        pod: object.clone(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let ip = state::pod_ip(pod)
        .map(|a| a.to_string())
        .unwrap_or_default();
    let etc_files = write_etc_files(&dir, pod, &ip, config).map_err(io)?;
    let netns = PathBuf::from(crate::net::NETNS_RUN_DIR).join(network_namespace(lab, pod));
    let hostname = host_network::hostname(pod);
    let spec = pod.spec.clone().unwrap_or_default();
    let service_env = crate::cluster::envvars::for_pod(
        &objects.services,
        &ns,
        spec.enable_service_links.unwrap_or(true),
    );
    let mounts: Vec<BindMount> = crate::cluster::volumes::mounts(c, volumes)
        .into_iter()
        .map(|m| BindMount {
            source: crate::runtime::volumes::volume_dir(&dir, &m.volume),
            destination: m.mount_path,
            read_only: m.read_only,
        })
        .collect();
    let reference = c.image.clone().unwrap_or_default();
    let cdir = dir.join(&c.name);
    if !crate::runtime::disk::is_mounted(&paths::disk_dir(lab)) {
        return Err(ControllerError::Pod {
            pod: object,
            message: format!(
                "the lab's disk for writable layers is not mounted at {} (a lab made by an older netlab?): take the lab down and up again",
                paths::writable_dir(lab).display()
            ),
        });
    }
    let writable = paths::container_writable_dir(lab, &ns, &name, &c.name);
    let root = rootfs::mount_overlay(layers, &writable, &cdir).map_err(io)?;
    let id = paths::container_id(&ns, &name, &c.name);
    let image_config = image.runtime_config();
    let mut runtime_spec = bundle::runtime_spec(&ContainerSpec {
        hostname: &hostname,
        container: c,
        image: &image_config,
        rootfs: &root,
        netns: &netns,
        etc_files: &etc_files,
        cgroups_path: paths::cgroups_path(lab, &id),
        service_env: &service_env,
        mounts: &mounts,
    })
    .map_err(|e| ControllerError::Pod {
        pod: object.clone(),
        message: e.to_string(),
    })?;
    let pod_ref = format!(
        "{name}_{ns}({})",
        pod.metadata.uid.as_deref().unwrap_or_default()
    );
    let image_user = image_config.user().clone().unwrap_or_default();
    if let Err(e) = crate::runtime::security::constrain(
        &mut runtime_spec,
        &spec,
        c,
        &image_user,
        &root,
        &pod_ref,
    ) {
        // Not created: the next try mounts a fresh rootfs.
        let _ = rootfs::unmount(&root);
        return Err(ControllerError::ContainerConfig {
            pod: object,
            message: e.to_string(),
        });
    }
    // config.json holds the environment, Secret values included: root only.
    let config = cdir.join("config.json");
    runtime_spec
        .save(&config)
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600))
                .map_err(Into::into)
        })
        .map_err(|e| ControllerError::Pod {
            pod: object.clone(),
            message: format!("writing OCI bundle: {e}"),
        })?;
    let log = paths::container_log(lab, &ns, &name, &c.name);
    let pid = crate::runtime::stdio::run(runc, &id, &cdir, &log, Wants::of(c))
        .await
        .map_err(|e| ControllerError::Pod {
            pod: object.clone(),
            message: e.to_string(),
        })?;
    Ok((
        pid,
        ContainerStatus {
            name: c.name.clone(),
            image: reference.clone(),
            image_id: format!("{}@{}", image.reference.name(), image.manifest_digest),
            container_id: Some(format!("runc://{id}")),
            ready: false,
            started: Some(true),
            restart_count: 0,
            state: Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(state::time(Utc::now())),
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    ))
}

/// A pod of the built-in DNS server: no container to start; it runs as
/// soon as the network exists, and the controller marks it ready once its
/// server answers in the pod's namespace.
fn start_builtin(pod: &mut Pod) {
    let now = state::time(Utc::now());
    let statuses = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            image_id: String::new(),
            container_id: Some("netlab://controller".into()),
            ready: false,
            started: Some(true),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(now.clone()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let status = pod.status.get_or_insert_with(Default::default);
    status.phase = Some("Running".into());
    status.start_time = Some(now);
    status.container_statuses = Some(statuses);
    status.qos_class = Some("BestEffort".into());
    set_conditions(pod, false);
}

/// The node's resolver file, for `dnsPolicy: Default` (the host's: nodes
/// share its filesystem).
fn node_resolv_conf() -> String {
    std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
}

/// The network namespace a pod's containers join: its own, or its node's
/// for a hostNetwork pod (which has none of its own).
pub fn network_namespace(lab: &str, pod: &Pod) -> String {
    match state::pod_node(pod).filter(|_| host_network::is_host_network(pod)) {
        Some(node) => paths::node_netns(lab, node),
        None => paths::pod_netns(
            lab,
            state::namespace(&pod.metadata),
            pod.metadata.name.as_deref().unwrap_or_default(),
        ),
    }
}

/// The files a kubelet manages for every pod, bind-mounted into each container.
fn write_etc_files(
    dir: &Path,
    pod: &Pod,
    ip: &str,
    config: &crate::lab::LabConfig,
) -> std::io::Result<Vec<(PathBuf, &'static str)>> {
    let spec = pod.spec.clone().unwrap_or_default();
    let namespace = state::namespace(&pod.metadata);
    let hostname = host_network::hostname(pod);
    // With a subdomain, the kubelet adds the pod's FQDN first. A
    // hostNetwork pod gets the node's hosts file instead (the kubelet
    // copies the node's): here the node's address and name, since a
    // netlab node's /etc is the host machine's.
    let (header, names) = match &spec.subdomain {
        _ if host_network::is_host_network(pod) => (
            "# Kubernetes-managed hosts file (host network).",
            hostname.clone(),
        ),
        Some(sub) => (
            "# Kubernetes-managed hosts file.",
            format!(
                "{hostname}.{sub}.{namespace}.svc.{}\t{hostname}",
                dns::CLUSTER_DOMAIN
            ),
        ),
        None => ("# Kubernetes-managed hosts file.", hostname.clone()),
    };
    let hosts = format!(
        "{header}\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n{ip}\t{names}\n"
    );
    let resolv = dns::resolv_conf(pod, config, &node_resolv_conf());
    let files = [
        ("hosts", hosts, "/etc/hosts"),
        ("hostname", format!("{hostname}\n"), "/etc/hostname"),
        ("resolv.conf", resolv, "/etc/resolv.conf"),
    ];
    let mut out = Vec::new();
    for (file, content, dest) in files {
        let path = dir.join(file);
        std::fs::write(&path, content)?;
        out.push((path, dest));
    }
    Ok(out)
}

/// Sets a pod's Ready/ContainersReady conditions and its containers' ready flags.
pub fn set_ready(pod: &mut Pod, ready: bool) {
    set_conditions(pod, ready)
}

fn set_conditions(pod: &mut Pod, ready: bool) {
    let now = state::time(Utc::now());
    let cond = |t: &str, ok: bool| PodCondition {
        type_: t.into(),
        status: if ok { "True" } else { "False" }.into(),
        last_transition_time: Some(now.clone()),
        ..Default::default()
    };
    let status = pod.status.get_or_insert_with(Default::default);
    status.conditions = Some(vec![
        cond("PodReadyToStartContainers", true),
        cond("Initialized", true),
        cond("Ready", ready),
        cond("ContainersReady", ready),
        cond("PodScheduled", true),
    ]);
    for cs in status.container_statuses.iter_mut().flatten() {
        cs.ready = ready;
    }
}

/// The check that pods just started serve: every container runs and every
/// declared TCP `containerPort` accepts connections, probed from the pod's
/// node (as a kubelet's tcpSocket probe would); it fails early, quoting the
/// log, when a container exits. Made from the state, run without it (the
/// lab's loop goes on meanwhile).
pub struct Serving {
    lab: String,
    by_node: HashMap<String, Vec<Target>>,
    /// (namespace, name, containers) of each pod checked.
    pods: Vec<(String, String, Vec<String>)>,
    timeout: Duration,
}

/// The check of the pods `pids` names (those just started).
pub fn serving(lab: &str, state: &ClusterState, pids: &Pids, timeout: Duration) -> Serving {
    let mut by_node: HashMap<String, Vec<Target>> = HashMap::new();
    let mut checked = Vec::new();
    for pod in &state.pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(pod_pids) = pids.get(&name).cloned() else {
            continue; // not started by this call
        };
        if dns::is_builtin(pod) {
            continue; // the controller serves it, later
        }
        let ns = state::namespace(&pod.metadata).to_string();
        let ip = state::pod_ip(pod).expect("addressed");
        let containers = &pod.spec.as_ref().expect("spec").containers;
        for c in containers {
            for p in c.ports.iter().flatten() {
                if p.protocol.as_deref().unwrap_or("TCP") == "TCP" {
                    by_node
                        .entry(state::pod_node(pod).unwrap_or_default().to_string())
                        .or_default()
                        .push(Target {
                            pod: name.clone(),
                            addr: SocketAddr::from((ip, p.container_port as u16)),
                            pids: pod_pids.clone(),
                        });
                }
            }
        }
        checked.push((
            ns,
            name,
            containers.iter().map(|c| c.name.clone()).collect(),
        ));
    }
    Serving {
        lab: lab.to_string(),
        by_node,
        pods: checked,
        timeout,
    }
}

impl Serving {
    /// The pods checked: (namespace, name).
    pub fn pods(&self) -> Vec<(String, String)> {
        self.pods
            .iter()
            .map(|(ns, name, _)| (ns.clone(), name.clone()))
            .collect()
    }

    pub async fn wait(self) -> Result<(), ControllerError> {
        let Serving {
            lab,
            by_node,
            pods,
            timeout,
        } = self;
        let deadline = Instant::now() + timeout;
        let runc = Runc::new(&paths::runc_root(&lab));
        let mut probes = Vec::new();
        for (node, targets) in by_node {
            let ns = NetNs::open(&paths::node_netns(&lab, &node))?;
            probes.push(tokio::task::spawn_blocking(move || {
                ns.run(move || probe_until(targets, deadline))
            }));
        }
        let mut waiting = Vec::new();
        for p in probes {
            waiting.extend(p.await.expect("probe task")?);
        }
        // Whatever did not answer: is its container still alive?
        let alive: HashMap<String, String> = runc
            .list()
            .await
            .map_err(|e| ControllerError::Runtime {
                message: e.to_string(),
            })?
            .into_iter()
            .map(|s| (s.id, s.status))
            .collect();
        let mut problems = Vec::new();
        for (ns, name, containers) in &pods {
            for c in containers {
                let id = paths::container_id(ns, name, c);
                if alive.get(&id).map(String::as_str) != Some("running") {
                    let log =
                        crate::runtime::crilog::text(&paths::container_log(&lab, ns, name, c));
                    let tail: Vec<&str> = log.lines().rev().take(5).collect();
                    problems.push(format!(
                        "pod/{name}: container {c} is not running; its last output: {}",
                        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                    ));
                }
            }
        }
        for t in waiting.iter().filter(|t| t.alive()) {
            problems.push(format!(
                "pod/{}: nothing accepts connections on its containerPort {} after {}s",
                t.pod,
                t.addr,
                timeout.as_secs()
            ));
        }
        if !problems.is_empty() {
            return Err(ControllerError::NotReady(problems));
        }
        Ok(())
    }
}

/// Pods that serve: ready (unless they are going away meanwhile).
pub fn mark_serving(state: &mut ClusterState, serving: &[(String, String)]) -> bool {
    let mut any = false;
    for mut pod in &mut state.pods {
        let key = (
            state::namespace(&pod.metadata).to_string(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        if pod.metadata.deletion_timestamp.is_none() && serving.contains(&key) {
            set_conditions(&mut pod, true);
            any = true;
        }
    }
    any
}

/// Stops a pod's containers and removes its rootfs mounts, files and
/// network namespace. Idempotent.
pub async fn remove_pod(lab: &str, pod: &Pod) -> Vec<String> {
    let mut errors = Vec::new();
    let ns = state::namespace(&pod.metadata).to_string();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let runc = Runc::new(&paths::runc_root(lab));
    let store = Store::new(&paths::data_dir());
    // The grace period the deletion asked for, else the pod's own.
    let grace = Duration::from_secs(
        pod.metadata
            .deletion_grace_period_seconds
            .or(pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(30)
            .max(0) as u64,
    );
    // Graceful termination, as the kubelet does it: each running
    // container's preStop hook, then the image's stop signal (SIGTERM by
    // default; nginx asks for SIGQUIT), then SIGKILL when the grace period
    // (counted from the start of the hooks) runs out. The pod already left
    // the ready endpoints; it stays in its Services' slices as terminating.
    let started = Instant::now();
    let mut pids = Vec::new();
    let containers: &[Container] = match &pod.spec {
        Some(s) if !dns::is_builtin(pod) => &s.containers,
        _ => &[],
    };
    let mut running = Vec::new();
    for c in containers {
        let id = paths::container_id(&ns, &name, &c.name);
        if let Ok(st) = runc.state(&id).await {
            running.push((c, id, st));
        }
    }
    if !grace.is_zero() {
        let hooks = running
            .iter()
            .filter(|(_, _, st)| st.status == "running")
            .map(|(c, _, _)| pre_stop(lab, pod, c, grace));
        for e in futures::future::join_all(hooks).await.into_iter().flatten() {
            tracing::warn!(lab, pod = %format!("{ns}/{name}"), error = %e, "FailedPreStopHook");
        }
    }
    let grace = grace.saturating_sub(started.elapsed());
    for (c, id, st) in running {
        if st.status == "running" && !grace.is_zero() {
            let signal = store
                .resolve(c.image.as_deref().unwrap_or_default())
                .ok()
                .and_then(|i| i.runtime_config().stop_signal().clone())
                .unwrap_or_else(|| "SIGTERM".into());
            let _ = runc.kill(&id, &signal).await;
        }
        pids.push(st.pid);
    }
    let _ = super::down::wait_gone_within(&pids, grace).await;
    for c in containers {
        let id = paths::container_id(&ns, &name, &c.name);
        if let Err(e) = runc.delete_force(&id).await {
            errors.push(e.to_string());
        }
    }
    super::down::wait_gone(&pids)
        .await
        .err()
        .into_iter()
        .for_each(|e| errors.push(e));
    let dir = paths::pod_dir(lab, &ns, &name);
    for m in rootfs::mounts_under(&dir) {
        if let Err(e) = rootfs::unmount(&m) {
            errors.push(e.to_string());
        }
    }
    // A hostNetwork pod's namespace is its node's, and its address the
    // node's: neither is the pod's to remove.
    if !host_network::is_host_network(pod) {
        let node_netns = state::pod_node(pod).map(|n| paths::node_netns(lab, n));
        let link = node_netns
            .as_deref()
            .zip(state::pod_ip(pod))
            .map(|(node_netns, addr)| crate::net::PodLink {
                node_netns,
                bridge: super::up::POD_BRIDGE,
                addr,
            });
        if let Err(e) = crate::net::remove_pod(&paths::pod_netns(lab, &ns, &name), link).await {
            errors.push(e.to_string());
        }
    }
    for d in [dir, paths::pod_writable_dir(lab, &ns, &name)] {
        if d.exists() {
            if let Err(e) = std::fs::remove_dir_all(&d) {
                errors.push(format!("removing {}: {e}", d.display()));
            }
        }
    }
    errors
}

/// A container's preStop hook, as the kubelet runs it: `exec` in the
/// container, `httpGet` from the node (User-Agent `kube-lifecycle`),
/// `sleep`; bounded by the grace period. The kubelet goes on to stop the
/// container whatever the hook's outcome; a failure is its warning.
async fn pre_stop(lab: &str, pod: &Pod, c: &Container, grace: Duration) -> Option<String> {
    let hook = c.lifecycle.as_ref()?.pre_stop.as_ref()?;
    if let Some(sleep) = &hook.sleep {
        tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(grace)).await;
        return None;
    }
    let (node, ip) = (state::pod_node(pod)?, state::pod_ip(pod)?);
    // The handler as a probe with the grace period as its timeout.
    let probe = k8s_openapi::api::core::v1::Probe {
        exec: hook.exec.clone(),
        http_get: hook.http_get.clone(),
        tcp_socket: hook.tcp_socket.clone(),
        timeout_seconds: Some(grace.as_secs().max(1) as i32),
        ..Default::default()
    };
    let ns = state::namespace(&pod.metadata);
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    // Bounded by the probe's timeout, which also ends an exec that runs
    // over (a future dropped here would leave it running).
    super::probes::run_once(lab, node, ns, name, ip, c, &probe)
        .await
        .err()
        .map(|e| format!("PreStopHook of container {:?} failed: {e}", c.name))
}

/// Removes pods concurrently (each may wait up to its grace period); one
/// error naming every failure.
pub async fn remove_pods(lab: &str, pods: &[Pod]) -> Result<(), ControllerError> {
    let errors: Vec<String> = futures::future::join_all(pods.iter().map(|p| remove_pod(lab, p)))
        .await
        .into_iter()
        .flatten()
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ControllerError::Runtime {
            message: errors.join("\n"),
        })
    }
}

/// A port a pod declares, and the processes that should serve it.
struct Target {
    pod: String,
    addr: SocketAddr,
    pids: Vec<i32>,
}

impl Target {
    /// All of the pod's container processes exist and are not zombies.
    fn alive(&self) -> bool {
        self.pids
            .iter()
            .all(|p| crate::runtime::runc::process_alive(*p))
    }
}

/// Runs inside a node's namespace: connects to each target until it answers,
/// its container dies or the deadline passes; returns those that never answered.
fn probe_until(mut targets: Vec<Target>, deadline: Instant) -> Vec<Target> {
    let mut failed = Vec::new();
    loop {
        let mut still = Vec::new();
        let round = Instant::now();
        let n = targets.len();
        let mut errs: HashMap<String, usize> = HashMap::new();
        let answers = connect_all(&targets, Duration::from_millis(200));
        for (t, answer) in targets.into_iter().zip(answers) {
            match answer {
                Ok(()) => continue,
                Err(e) => *errs.entry(e.kind().to_string()).or_default() += 1,
            }
            if t.alive() {
                still.push(t);
            } else {
                failed.push(t);
            }
        }
        tracing::debug!(targets = n, left = still.len(), ?errs, elapsed = ?round.elapsed(), "probe round");
        targets = still;
        if targets.is_empty() || Instant::now() >= deadline {
            failed.extend(targets);
            return failed;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A TCP connect to every target at once (non-blocking, waited for
/// together, at most `wait`): whether each answered. One at a time, the
/// 500 pods of a node took 0.7–0.9 s of the scale lab's `up`.
fn connect_all(targets: &[Target], wait: Duration) -> Vec<std::io::Result<()>> {
    use nix::errno::Errno;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::os::fd::{AsFd, AsRawFd, OwnedFd};
    // Every target's answer; one not heard by the deadline timed out.
    let mut answers: Vec<std::io::Result<()>> = targets
        .iter()
        .map(|_| Err(std::io::ErrorKind::TimedOut.into()))
        .collect();
    let mut pending: Vec<(usize, OwnedFd)> = Vec::new();
    // In batches, so that a node of many pods stays well within the
    // process's file descriptors.
    for first in (0..targets.len()).step_by(256) {
        for i in first..(first + 256).min(targets.len()) {
            let std::net::SocketAddr::V4(addr) = targets[i].addr else {
                answers[i] = Err(std::io::Error::other("not an IPv4 address"));
                continue;
            };
            let started = socket::socket(
                AddressFamily::Inet,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
                None,
            )
            .and_then(|fd| {
                match socket::connect(fd.as_raw_fd(), &SockaddrIn::from(addr)) {
                    Ok(()) => Ok(None),
                    Err(Errno::EINPROGRESS) => Ok(Some(fd)),
                    Err(e) => Err(e),
                }
            });
            match started {
                Ok(Some(fd)) => pending.push((i, fd)),
                Ok(None) => answers[i] = Ok(()),
                Err(e) => answers[i] = Err(e.into()),
            }
        }
        let deadline = Instant::now() + wait;
        while !pending.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut fds: Vec<PollFd> = pending
                .iter()
                .map(|(_, fd)| PollFd::new(fd.as_fd(), PollFlags::POLLOUT))
                .collect();
            match poll(
                &mut fds,
                PollTimeout::try_from(left).unwrap_or(PollTimeout::ZERO),
            ) {
                Err(Errno::EINTR) => continue,
                Err(_) | Ok(0) => break,
                Ok(_) => {}
            }
            let done: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            let mut still = Vec::new();
            for ((i, fd), done) in std::mem::take(&mut pending).into_iter().zip(done) {
                if !done {
                    still.push((i, fd));
                    continue;
                }
                // Writable: connected, or refused (the error says which).
                answers[i] = match socket::getsockopt(&fd, sockopt::SocketError) {
                    Ok(0) => Ok(()),
                    Ok(e) => Err(std::io::Error::from_raw_os_error(e)),
                    Err(e) => Err(e.into()),
                };
            }
            pending = still;
        }
        // Not heard by the deadline: timed out (closed here).
        pending.clear();
    }
    answers
}

/// `Some(start time)` when the store believes the container runs.
pub fn running_since(
    cs: &ContainerStatus,
) -> Option<Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>> {
    cs.state
        .as_ref()
        .and_then(|s| s.running.as_ref())
        .map(|r| r.started_at.clone())
}

/// The state of a container whose process is gone. Its exit status is not
/// known: the process is not netlab's child (runc run -d).
pub fn exited(
    started_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            reason: Some("Error".into()),
            message: Some("the container's process exited".into()),
            exit_code: -1,
            started_at,
            finished_at: Some(state::time(Utc::now())),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The state of a container whose exit code is known (the prober killed
/// it): as the kubelet reports it, "Completed" for 0, else "Error".
pub fn exited_with(
    started_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    exit_code: i32,
) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            reason: Some(if exit_code == 0 { "Completed" } else { "Error" }.into()),
            exit_code,
            started_at,
            finished_at: Some(state::time(Utc::now())),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodStatus;

    #[test]
    fn connects_to_every_target_at_once() {
        let listeners: Vec<std::net::TcpListener> = (0..300)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        // A port nothing listens on: bound, then let go.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let target = |addr| Target {
            pod: "p".into(),
            addr,
            pids: vec![],
        };
        let mut targets: Vec<Target> = listeners
            .iter()
            .map(|l| target(l.local_addr().unwrap()))
            .collect();
        targets.push(target(closed));
        let answers = connect_all(&targets, Duration::from_secs(2));
        assert_eq!(answers.len(), 301);
        // More than one batch of 256, all answered.
        assert!(answers[..300].iter().all(|a| a.is_ok()), "{answers:?}");
        assert_eq!(
            answers[300].as_ref().unwrap_err().kind(),
            std::io::ErrorKind::ConnectionRefused
        );
    }

    fn waiting(reason: &str, container_id: Option<&str>) -> ContainerStatus {
        let mut cs = image_waiting(&Container::default(), reason, "why");
        cs.container_id = container_id.map(String::from);
        cs
    }

    fn pod(phase: Option<&str>, statuses: Option<Vec<ContainerStatus>>) -> Pod {
        Pod {
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                node_name: Some("node-1".into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: phase.map(String::from),
                container_statuses: statuses,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn which_container_waits_for_what() {
        // (reason, has a container, waits for image, waits for volumes/config)
        let cases = [
            ("ErrImagePull", false, true, false),
            ("ImagePullBackOff", false, true, false),
            ("ErrImageNeverPull", false, true, false),
            ("InvalidImageName", false, true, false),
            ("ContainerCreating", false, false, true),
            ("CreateContainerConfigError", false, false, true),
            // A container that exists is not waiting to be created.
            ("ContainerCreating", true, false, false),
            ("CrashLoopBackOff", true, false, false),
            ("CrashLoopBackOff", false, false, false),
        ];
        for (reason, exists, image, volumes) in cases {
            let cs = waiting(reason, exists.then_some("runc://x"));
            assert_eq!(waits_for_image(&cs), image, "{reason} image");
            assert_eq!(waits_for_volumes(&cs), volumes, "{reason} exists={exists}");
        }
    }

    #[test]
    fn pending_means_placed_and_never_started() {
        let cases = [
            (pod(Some("Pending"), None), true),
            (
                pod(Some("Pending"), Some(vec![waiting("ErrImagePull", None)])),
                false,
            ),
            (pod(Some("Running"), None), false),
            (pod(None, None), false),
            (Pod::default(), false),
            // No node could take it: nothing to start yet.
            (
                Pod {
                    spec: None,
                    ..pod(Some("Pending"), None)
                },
                false,
            ),
        ];
        for (i, (p, want)) in cases.iter().enumerate() {
            assert_eq!(is_pending(p), *want, "case {i}");
            assert_eq!(is_unscheduled(p), p.spec.is_none(), "case {i}");
        }
    }

    #[test]
    fn config_errors_are_read_back() {
        let p = pod(
            Some("Pending"),
            Some(vec![
                ContainerStatus {
                    name: "a".into(),
                    ..waiting("CreateContainerConfigError", None)
                },
                ContainerStatus {
                    name: "b".into(),
                    ..waiting("ErrImagePull", None)
                },
            ]),
        );
        assert_eq!(config_error(&p, "a").as_deref(), Some("why"));
        assert_eq!(config_error(&p, "b"), None);
        assert_eq!(config_error(&p, "c"), None);
    }
}
