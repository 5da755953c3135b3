//! `netlab up`, `netlab down`, `netlab labs`.

use super::get::{self, GetArgs};
use super::kubeconfig;
use super::printer::{Format, Printer};
use crate::controller::{self, UpOptions};
use crate::lab;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Lab files: Kubernetes manifests, optionally with a kind: Lab document.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Lab name (default: the Lab document's, else the first file's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Seconds to wait for every pod to run and serve its ports.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    #[command(flatten)]
    pub mirrors: super::images::MirrorArgs,
}

#[derive(Debug, clap::Args)]
pub struct DownArgs {
    /// Labs to remove, by name or by the lab file they came up from (as
    /// `kind delete cluster --name` and `containerlab destroy -t FILE`).
    pub targets: Vec<String>,
    /// The lab to remove (as `--lab`).
    #[arg(long)]
    pub name: Option<String>,
    /// Remove every lab on this host.
    #[arg(long)]
    pub all: bool,
}

/// The lab a `down` target names: a lab file (its Lab document's name,
/// else the file's, as `up` names it) or a lab's name.
fn lab_of(target: &str) -> Result<String> {
    let path = std::path::Path::new(target);
    let file_like = path.is_file()
        || [".yaml", ".yml", ".json"]
            .iter()
            .any(|e| target.ends_with(e))
        || target.contains('/');
    if !file_like {
        return Ok(target.to_string());
    }
    super::existing_files(&[path.to_path_buf()])?;
    let spec = lab::load(&[path.to_path_buf()], &lab::Overrides { name: None })
        .with_context(|| format!("{target}: the lab file to take down"))?;
    Ok(spec.config.name)
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

pub async fn up(args: UpArgs, lab_flag: Option<String>) -> Result<i32> {
    super::existing_files(&args.files)?;
    let t = std::time::Instant::now();
    let spec = lab::load(
        &args.files,
        &lab::Overrides {
            name: args.name.or(lab_flag),
        },
    )?;
    tracing::debug!(elapsed = ?t.elapsed(), "up: lab files read");
    let summary = controller::up(
        spec,
        &UpOptions {
            registry_mirrors: args.mirrors.registry_mirror,
            progress: true,
        },
    )
    .await?;
    let state = &summary.state;
    let lab = &state.config.name;
    let t = std::time::Instant::now();
    let timeout = Duration::from_secs(args.timeout);
    // The lab's process starts the pods: wait for them to serve (and for
    // the cluster DNS's endpoints) through the API. As any failure of
    // `up`, one here leaves nothing of the lab.
    let ready = async {
        let client = super::client::Client::connect(lab).await?;
        // The lab's process made its store from the plan: the pods are
        // started by then, or later.
        let revision = client.revision().await?;
        client
            .settle(&revision, timeout)
            .await
            .map_err(|f| anyhow::anyhow!("{}", f.message))?;
        let containers = t.elapsed();
        let api = add_context(lab, timeout).await?;
        if state.config.dns.enabled {
            wait_dns(lab, timeout).await?;
        }
        Ok::<_, anyhow::Error>((containers, api))
    }
    .await;
    let (containers, api) = match ready {
        Ok(r) => r,
        Err(e) => {
            let _ = remove_context(lab);
            let report = controller::down(lab).await;
            for problem in report.errors {
                eprintln!("removing lab {lab}: {problem}");
            }
            return Err(e);
        }
    };
    eprintln!(
        "lab {lab} is up in {:.2}s (network {:.2}s, containers {:.2}s): {}, {} — kubectl context {:?} (API {})",
        (summary.total + t.elapsed()).as_secs_f64(),
        summary.network.as_secs_f64(),
        containers.as_secs_f64(),
        plural(state.nodes.len(), "node"),
        plural(state.pods.len(), "pod"),
        kubeconfig::context_name(lab),
        api,
    );
    if !state.pods.is_empty() {
        // What kubectl get pods -A -o wide prints, from the lab's API.
        let args = GetArgs {
            kinds: vec![get::kind("pods")?],
            names: vec![],
            selector: None,
            field_selector: None,
            format: Format::Wide,
            namespace: None,
            no_headers: false,
        };
        let client = super::client::Client::connect(lab).await?;
        print!(
            "{}",
            get::render(&get::fetch(&client, &args).await?, &args)?
        );
    }
    Ok(0)
}

pub async fn down(args: DownArgs, lab_flag: Option<String>) -> Result<i32> {
    let labs = if args.all {
        controller::labs()
    } else if !args.targets.is_empty() {
        args.targets
            .iter()
            .map(|t| lab_of(t))
            .collect::<Result<Vec<_>>>()?
    } else {
        vec![super::select_lab(args.name.or(lab_flag))?]
    };
    let mut failed = Vec::new();
    for lab in labs {
        crate::lab::config::validate_lab_name(&lab).map_err(anyhow::Error::msg)?;
        // The kubeconfig entries first: they are found by the record the
        // lab's directory keeps, which the sweep removes.
        let context = remove_context(&lab);
        let report = controller::down(&lab).await;
        if let Err(e) = context {
            failed.push(format!("lab {lab}: its kubeconfig context: {e:#}"));
        }
        if !report.found {
            eprintln!("lab {lab}: nothing to remove");
        } else if report.errors.is_empty() {
            eprintln!(
                "lab {lab} is down ({} containers, {} namespaces removed)",
                report.containers, report.namespaces
            );
        } else {
            failed.push(format!("lab {lab}:\n  {}", report.errors.join("\n  ")));
        }
    }
    if !failed.is_empty() {
        bail!("some objects could not be removed:\n{}", failed.join("\n"));
    }
    Ok(0)
}

pub async fn labs() -> Result<i32> {
    let mut t = Printer::new(["NAME", "NODES", "PODS", "API", "DIRECTORY"]);
    for lab in controller::labs() {
        let dir = crate::paths::lab_dir(&lab);
        // Counts from the lab's API, when its process runs (`labs` never
        // starts one).
        let count = |plural: &'static str| {
            let lab = lab.clone();
            async move {
                controller::daemon::running(&lab)?;
                let client = super::client::Client::connect(&lab).await.ok()?;
                let r = get::kind(plural).ok()?;
                let list = client
                    .get(&super::client::path(r, None, None), super::client::JSON)
                    .await
                    .ok()?;
                Some(list["items"].as_array()?.len().to_string())
            }
        };
        let nodes = count("nodes").await;
        let pods = count("pods").await;
        let api = crate::api::address(&lab)
            .filter(|_| controller::daemon::running(&lab).is_some())
            .map(crate::api::url);
        t.row([
            lab.clone(),
            nodes.unwrap_or_else(|| "?".into()),
            pods.unwrap_or_else(|| "?".into()),
            api.unwrap_or_else(|| "<not running>".into()),
            dir.display().to_string(),
        ]);
    }
    if t.is_empty() {
        eprintln!("No labs are up.");
    } else {
        print!("{}", t.render());
    }
    Ok(0)
}

/// Waits, through the lab's API, until the cluster DNS serves (the
/// kube-dns Endpoints have an address), so that names resolve as soon as
/// `up` returns.
async fn wait_dns(lab: &str, timeout: Duration) -> Result<()> {
    use crate::cluster::dns;
    let deadline = std::time::Instant::now() + timeout;
    let client = super::client::Client::connect(lab).await?;
    let path = format!(
        "/api/v1/namespaces/{}/endpoints/{}",
        dns::NAMESPACE,
        dns::SERVICE
    );
    loop {
        let ep = client.get_opt(&path).await?;
        let ready = ep
            .as_ref()
            .and_then(|e| e["subsets"].as_array())
            .is_some_and(|s| {
                s.iter()
                    .any(|s| s["addresses"].as_array().is_some_and(|a| !a.is_empty()))
            });
        if ready {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            bail!(
                "the cluster DNS of lab {lab} did not start within {}s (the lab was removed again): see {}",
                timeout.as_secs(),
                crate::controller::daemon::log_file(lab).display()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits for the lab's process to serve its API, then merges the lab's
/// context into the invoking user's kubeconfig (recording which file, for
/// `down`). Returns the API's URL.
async fn add_context(lab: &str, timeout: Duration) -> Result<String> {
    let deadline = std::time::Instant::now() + timeout;
    let addr = loop {
        if let Some(a) = crate::api::address(lab) {
            break a;
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "lab {lab} is up but its Kubernetes API did not start within {}s: see {}",
                timeout.as_secs(),
                crate::controller::daemon::log_file(lab).display()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let url = crate::api::url(addr);
    let pki = crate::api::pki::LabPki::read(&crate::api::pki::dir(lab))
        .with_context(|| format!("lab {lab}'s certificates"))?;
    let target = kubeconfig::target();
    kubeconfig::add(&target, lab, &url, &pki)?;
    std::fs::write(
        kubeconfig::record_file(lab),
        target.path.as_os_str().as_encoded_bytes(),
    )
    .with_context(|| format!("lab {lab}'s directory"))?;
    Ok(url)
}

/// Removes the lab's context from the kubeconfig `up` merged it into
/// (or, when that record is gone, from the one `up` would choose).
fn remove_context(lab: &str) -> Result<()> {
    let mut target = kubeconfig::target();
    if let Ok(bytes) = std::fs::read(kubeconfig::record_file(lab)) {
        use std::os::unix::ffi::OsStringExt;
        target.path = PathBuf::from(std::ffi::OsString::from_vec(bytes));
    }
    kubeconfig::remove(&target, lab)
}

/// `netlab kubeconfig`: a standalone kubeconfig for the lab.
pub fn print_kubeconfig(lab_flag: Option<String>) -> Result<i32> {
    let lab = super::select_lab(lab_flag)?;
    let addr = crate::api::address(&lab).with_context(|| {
        format!("lab {lab} serves no Kubernetes API (is its process running? `netlab controller start --lab {lab}`)")
    })?;
    let pki = crate::api::pki::LabPki::read(&crate::api::pki::dir(&lab))
        .with_context(|| format!("lab {lab}'s certificates"))?;
    print!(
        "{}",
        kubeconfig::standalone(&lab, &crate::api::url(addr), &pki)
    );
    Ok(0)
}
