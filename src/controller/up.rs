//! `netlab up`: validate everything (images pulled) and plan the state,
//! then claim the lab, build the network and the lab's disk, and start the
//! lab's process with the planned state; it makes the store and starts the
//! pods. Any failure after the claim removes the whole lab again (`down`)
//! before returning; the caller (`cli::lifecycle`) waits for the pods
//! through the API, and removes the lab too when they do not serve.

use super::{down, images, pods, ControllerError};
use crate::cluster::{state, topology, ClusterState, HostInfo};
use crate::lab::LabSpec;
use crate::net::{self, DcPlan, NetNs, NetPlan, NodePlan, PodPlan};
use crate::paths;
use crate::runtime::{Progress, Registries, Runc, Store};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// `--registry-mirror REGISTRY=URL` flags; they join the lab's config
    /// (and win over its Lab document and the host's registries file).
    pub registry_mirrors: Vec<String>,
    /// Progress bars for pulls (on a terminal).
    pub progress: bool,
}

#[derive(Debug)]
pub struct UpSummary {
    /// The state as planned (the pods not started yet).
    pub state: ClusterState,
    pub network: Duration,
    /// Until the lab's process was started.
    pub total: Duration,
}

pub async fn up(mut spec: LabSpec, options: &UpOptions) -> Result<UpSummary, ControllerError> {
    let start = Instant::now();
    let lab = spec.config.name.clone();

    // 1. Everything that can be checked without touching the host.
    if super::lab_exists(&lab) {
        return Err(ControllerError::AlreadyUp { lab });
    }
    let flags = Registries::from_flags(&options.registry_mirrors).map_err(|e| {
        ControllerError::Runtime {
            message: e.to_string(),
        }
    })?;
    spec.config.registry_mirrors.extend(flags.mirror_map());
    let registries = images::registries(&spec.config)?;
    let store = Store::new(&paths::data_dir());
    let progress = if options.progress {
        Progress::stderr()
    } else {
        Progress::hidden()
    };
    let containers = containers(&spec);
    let images = images::ensure(
        images::wanted(containers.iter().map(|(_, c)| *c)),
        &store,
        &registries,
        &progress,
    )
    .await;
    // An image that cannot be had fails `up` before anything exists, like
    // any other invalid input (`apply` to a running lab leaves such pods
    // waiting in ErrImagePull instead, as Kubernetes does).
    let problems: Vec<String> = containers
        .iter()
        .filter_map(|(object, c)| {
            let f = images::for_container(&images, c).err()?;
            Some(format!(
                "{object}: container {}: {}: {}",
                c.name, f.reason, f.message
            ))
        })
        .collect();
    if !problems.is_empty() {
        return Err(ControllerError::Images(problems));
    }
    let runc = Runc::new(&paths::runc_root(&lab));
    let runtime_version = runc
        .version()
        .await
        .ok_or_else(|| ControllerError::Runtime {
            message: format!(
            "cannot run {} --version: install runc (apt-get install runc) or set NETLAB_RUNTIME",
            runc.binary.display()
        ),
        })?;
    let host = host_info(runtime_version);
    phase("images", &start);
    let mut state = ClusterState::plan(&spec, &host, chrono::Utc::now(), &mut rand::rng())?;
    phase("planned", &start);
    // The images were pulled for the planned pods: their events say so,
    // as the kubelet's would (the lab's process starts them later).
    for pod in state.pods.clone() {
        if crate::cluster::dns::is_builtin(&pod) {
            continue;
        }
        for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
            let outcome = images::for_container(&images, c);
            if matches!(&outcome, Ok(r) if r.pulled.is_some()) {
                images::record(&mut state, &pod, c, &outcome);
            }
        }
    }
    let mut plan = net_plan(&state);
    plan.validate()?;
    // The pods' network is made by the lab's process, with their
    // containers (`converge`): made here too, it was taken for what an
    // interrupted start left, removed and made again.
    plan.pods.clear();
    let public = public_plan(&state);
    if let Some(access) = &public.host_access {
        let clash = net::public::host_routes_overlapping(state.config.public.cidr).await?;
        if !clash.is_empty() {
            return Err(ControllerError::Runtime {
                message: format!(
                    "host access: the lab's public range {} overlaps the host's routes ({}): pick another spec.public.cidr, or turn hostAccess off (nothing was created; {} not added)",
                    state.config.public.cidr,
                    clash.join(", "),
                    access.ifname
                ),
            });
        }
    }

    let disk_size = disk_size(&spec)?;

    // 2. The lab is claimed by making its directory: of two `up`s of one
    //    lab, the one that comes second stops here, having touched nothing.
    let dir = paths::claim_lab_dir(&lab).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => ControllerError::AlreadyUp { lab: lab.clone() },
        _ => ControllerError::io(&paths::lab_dir(&lab), e),
    })?;
    // From here on the host changes: any failure tears the lab down.
    let result = async {
        crate::runtime::disk::mount_run_dir(&dir).map_err(|e| ControllerError::io(&dir, e))?;
        std::fs::create_dir_all(dir.join("pods")).map_err(|e| ControllerError::io(&dir, e))?;
        let t = Instant::now();
        // The lab's disk (mkfs and a loop mount, about 50 ms) is made while
        // the network is built.
        let disk_dir = paths::disk_dir(&lab);
        let disk = {
            let dir = disk_dir.clone();
            tokio::task::spawn_blocking(move || crate::runtime::disk::create(&dir, disk_size))
        };
        let network = async {
            net::apply(&plan).await?;
            net::public::apply(&public).await?;
            Ok::<_, ControllerError>(())
        };
        let (network, disk) = tokio::join!(network, disk);
        disk.map_err(|e| ControllerError::Runtime {
            message: e.to_string(),
        })?
        .map_err(|e| ControllerError::Runtime {
            message: format!("the lab's disk for writable layers: {e}"),
        })?;
        network?;
        phase("network and disk", &start);
        let network = t.elapsed();
        // The lab's process owns the lab from here on: it makes its store
        // from the planned state (handed over on its stdin: nothing else
        // writes the store), starts the pods (the one place pods start),
        // waits for them to serve and syncs the rules; the caller waits
        // for that through the API.
        super::daemon::spawn_new(&lab, &state)?;
        phase("controller started", &start);
        Ok::<_, ControllerError>(network)
    }
    .await;
    match result {
        Ok(network) => Ok(UpSummary {
            state,
            network,
            total: start.elapsed(),
        }),
        Err(e) => {
            let leftovers = down::down(&lab).await;
            if leftovers.errors.is_empty() {
                Err(e)
            } else {
                Err(ControllerError::Cleanup {
                    cause: Box::new(e),
                    problems: leftovers.errors,
                })
            }
        }
    }
}

/// The size of the lab's disk for writable layers: `spec.diskSize`, or
/// 10 GiB; never more than the free space of the filesystem that holds it
/// (a sparse file promises what the disk may not have).
fn disk_size(spec: &LabSpec) -> Result<u64, ControllerError> {
    use crate::lab::config::{DEFAULT_DISK_SIZE, MIN_DISK_SIZE};
    let dir = paths::disk_dir(&spec.config.name);
    let free = crate::runtime::disk::free_space(&dir).map_err(|e| ControllerError::Runtime {
        message: format!("free space under {}: {e}", dir.display()),
    })?;
    let gib = |b: u64| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64);
    match spec.config.disk_size {
        Some(asked) if asked > free => Err(ControllerError::Runtime {
            message: format!(
                "{}Lab: spec.diskSize {} is more than the {} free under {}: ask for less, or free some space (nothing was created)",
                spec.lab_at.as_ref().map(|a| format!("{a}: ")).unwrap_or_default(),
                gib(asked),
                gib(free),
                paths::data_dir().display()
            ),
        }),
        Some(asked) => Ok(asked),
        None if free < MIN_DISK_SIZE => Err(ControllerError::Runtime {
            message: format!(
                "only {} free under {}: a lab needs at least 16 MiB for its containers' writable layers (nothing was created)",
                gib(free),
                paths::data_dir().display()
            ),
        }),
        None => Ok(DEFAULT_DISK_SIZE.min(free)),
    }
}

/// Where `up`'s time goes (`NETLAB_LOG=netlab=debug`).
fn phase(what: &str, since: &Instant) {
    tracing::debug!(elapsed = ?since.elapsed(), "up: {what}");
}

/// Every container of the lab's Deployments and Pods, with its object
/// (`lab.yaml:12: Deployment/my-nginx`).
fn containers(spec: &LabSpec) -> Vec<(String, &k8s_openapi::api::core::v1::Container)> {
    let deployments = spec.deployments.iter().map(|d| {
        (
            format!(
                "{}: Deployment/{}",
                d.at,
                d.object.metadata.name.as_deref().unwrap_or_default()
            ),
            d.object
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref()),
        )
    });
    let pods = spec.pods.iter().map(|p| {
        (
            format!(
                "{}: Pod/{}",
                p.at,
                p.object.metadata.name.as_deref().unwrap_or_default()
            ),
            p.object.spec.as_ref(),
        )
    });
    deployments
        .chain(pods)
        .flat_map(|(object, s)| {
            s.into_iter()
                .flat_map(|s| s.containers.iter())
                .map(move |c| (object.clone(), c))
        })
        .collect()
}

/// `pod/x: container c: ErrImagePull: …` for every container waiting for its image.
pub fn waiting_for_images(state: &ClusterState) -> Vec<String> {
    let mut out = Vec::new();
    for p in &state.pods {
        for cs in p
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
            .filter(|cs| pods::waits_for_image(cs))
        {
            let w = cs.state.as_ref().and_then(|s| s.waiting.as_ref());
            out.push(format!(
                "pod/{}: container {}: {}: {}",
                p.metadata.name.as_deref().unwrap_or_default(),
                cs.name,
                w.and_then(|w| w.reason.clone()).unwrap_or_default(),
                w.and_then(|w| w.message.clone()).unwrap_or_default()
            ));
        }
    }
    out
}

/// The network the cluster state asks for (pure).
pub fn net_plan(state: &ClusterState) -> NetPlan {
    let lab = &state.config.name;
    let nodes = topology::nodes(&state.config);
    let node_plans: Vec<NodePlan> = nodes
        .iter()
        .map(|n| NodePlan {
            name: n.name.clone(),
            netns: paths::node_netns(lab, &n.name),
            dc_port: net::ifname("n-", &n.name),
            lan_addr: n.lan,
            bridge: POD_BRIDGE.into(),
            gateway: n.gateway,
            routes: nodes
                .iter()
                .filter(|o| o.name != n.name)
                .map(|o| (o.pod_subnet, o.lan.addr()))
                // A process on a node connects to a clusterIP only if the
                // node has a route towards it (real nodes use their default
                // route); the nat output hook then DNATs it to an endpoint
                // before it leaves, so the gateway never sees it.
                .chain([(
                    state.config.service_cidr,
                    topology::dc_address(&state.config).addr(),
                )])
                .collect(),
        })
        .collect();
    NetPlan {
        dc: DcPlan {
            netns: paths::dc_netns(lab),
            bridge: "lan0".into(),
            addr: topology::dc_address(&state.config),
            routes: nodes.iter().map(|n| (n.pod_subnet, n.lan.addr())).collect(),
        },
        nodes: node_plans,
        pods: state
            .pods
            .iter()
            .filter(|p| state::pod_node(p).is_some())
            .filter_map(|p| pod_plan(state, p))
            .collect(),
    }
}

/// The lab's public network: its bridge in the dc namespace, the nodes'
/// ExternalIPs, the external host, and host access when asked for.
pub fn public_plan(state: &ClusterState) -> net::public::PublicPlan {
    use net::public::{HostAccess, PublicPlan, PublicPort, NODE_IFNAME};
    let lab = &state.config.name;
    let config = &state.config;
    PublicPlan {
        dc_netns: paths::dc_netns(lab),
        bridge: "pub0".into(),
        addr: topology::public_bridge(config),
        nodes: topology::nodes(config)
            .iter()
            .map(|n| PublicPort {
                netns: paths::node_netns(lab, &n.name),
                dc_port: net::ifname("p-", &n.name),
                ifname: NODE_IFNAME.into(),
                addr: n.external,
            })
            .collect(),
        hosts: vec![PublicPort {
            netns: paths::host_netns(lab, crate::lab::config::EXTERNAL_HOST),
            dc_port: net::ifname("h-", crate::lab::config::EXTERNAL_HOST),
            ifname: "eth0".into(),
            addr: topology::external_host(config),
        }],
        host_access: config.public.host_access.then(|| HostAccess {
            ifname: paths::host_access_ifname(lab),
            addr: topology::host_access(config),
        }),
    }
}

/// Each node's bridge for its pods, as the CNI bridge plugin names it.
pub const POD_BRIDGE: &str = "cni0";

/// The network of its own that a placed pod needs: none for a hostNetwork
/// pod, which joins its node's namespace (no veth, no address of its own).
pub fn pod_plan(state: &ClusterState, p: &k8s_openapi::api::core::v1::Pod) -> Option<PodPlan> {
    if crate::cluster::host_network::is_host_network(p) {
        return None;
    }
    let lab = &state.config.name;
    let ns = state::namespace(&p.metadata);
    let name = p.metadata.name.as_deref().unwrap_or_default();
    let node_name = state::pod_node(p).unwrap_or_default();
    let node = topology::nodes(&state.config)
        .into_iter()
        .find(|n| n.name == node_name)
        .expect("pods are placed on lab nodes");
    let ip = state::pod_ip(p).expect("pods are addressed when placed");
    Some(PodPlan {
        netns: paths::pod_netns(lab, ns, name),
        node_netns: paths::node_netns(lab, node_name),
        host_veth: net::ifname("veth", &format!("{ns}/{name}")),
        bridge: POD_BRIDGE.into(),
        addr: ipnet::Ipv4Net::new(ip, node.pod_subnet.prefix_len()).expect("valid prefix"),
        gateway: node.gateway.addr(),
    })
}

fn host_info(container_runtime: String) -> HostInfo {
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let os_image = os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into());
    let kernel_version = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
    .to_string();
    HostInfo {
        os_image,
        kernel_version,
        container_runtime,
        architecture,
    }
}

/// Opens a node's namespace (for `exec node/<name>`).
pub fn node_netns(lab: &str, node: &str) -> Result<NetNs, ControllerError> {
    Ok(NetNs::open(&paths::node_netns(lab, node))?)
}
