//! The kubelet's image manager: which images a pod's containers need, per
//! `imagePullPolicy`, pulled (or found) before the containers start; a pull
//! that fails leaves its container waiting in `ErrImagePull`, then
//! `ImagePullBackOff`, with the kubelet's events.

use super::ControllerError;
use crate::cluster::{events, ClusterState};
use crate::lab::config::LabConfig;
use crate::runtime::{self, Image, Progress, Pulled, Reference, Registries, Store};
use k8s_openapi::api::core::v1::{Container, Pod};
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Policy {
    Never,
    IfNotPresent,
    Always,
}

/// A container's pull policy, with Kubernetes' default: `Always` for a
/// `:latest` or untagged image, else `IfNotPresent`.
pub fn policy(c: &Container) -> Policy {
    match c.image_pull_policy.as_deref() {
        Some("Always") => Policy::Always,
        Some("Never") => Policy::Never,
        Some("IfNotPresent") => Policy::IfNotPresent,
        _ => {
            let image = c.image.as_deref().unwrap_or_default();
            match Reference::parse(image) {
                Ok(r) if r.digest.is_none() && r.tag.as_deref() == Some("latest") => Policy::Always,
                _ => Policy::IfNotPresent,
            }
        }
    }
}

/// Why a container's image is not there (the reason `get pods` shows).
#[derive(Debug, Clone)]
pub struct Failure {
    pub reason: &'static str,
    pub message: String,
}

/// An image ready to run, and whether it was pulled now.
#[derive(Debug, Clone)]
pub struct Ready {
    pub image: Image,
    pub pulled: Option<Pulled>,
}

/// By image as written in the pod spec.
pub type Outcomes = HashMap<String, Result<Ready, Failure>>;

/// The mirrors of a lab: the host's registries config, then the lab's own
/// (which `up` already merged with `--registry-mirror`).
pub fn registries(config: &LabConfig) -> Result<Registries, ControllerError> {
    let file =
        Registries::load(&Registries::config_path()).map_err(|e| ControllerError::Runtime {
            message: e.to_string(),
        })?;
    let lab = Registries::from_mirrors(&config.registry_mirrors).map_err(|e| {
        ControllerError::Runtime {
            message: e.to_string(),
        }
    })?;
    Ok(file.overlay(&lab))
}

/// The images (with the strongest policy asking for each) of some containers.
pub fn wanted<'a>(containers: impl IntoIterator<Item = &'a Container>) -> Vec<(String, Policy)> {
    let mut by_image: HashMap<String, Policy> = HashMap::new();
    for c in containers {
        let image = c.image.clone().unwrap_or_default();
        let p = policy(c);
        let e = by_image.entry(image).or_insert(p);
        *e = (*e).max(p);
    }
    let mut v: Vec<_> = by_image.into_iter().collect();
    v.sort();
    v
}

/// Makes each image present as its policy says; distinct images are pulled
/// at the same time.
pub async fn ensure(
    wanted: Vec<(String, Policy)>,
    store: &Store,
    registries: &Registries,
    progress: &Progress,
) -> Outcomes {
    let jobs = wanted.into_iter().map(|(image, policy)| async move {
        let outcome = ensure_one(&image, policy, store, registries, progress).await;
        (image, outcome)
    });
    futures::future::join_all(jobs).await.into_iter().collect()
}

async fn ensure_one(
    image: &str,
    policy: Policy,
    store: &Store,
    registries: &Registries,
    progress: &Progress,
) -> Result<Ready, Failure> {
    let reference = Reference::parse(image).map_err(|e| Failure {
        reason: "InvalidImageName",
        message: format!("Failed to apply default image tag {image:?}: {e}"),
    })?;
    let present = store.resolve(&reference.to_string()).ok();
    match (policy, present) {
        (Policy::Never, Some(image)) | (Policy::IfNotPresent, Some(image)) => Ok(Ready {
            image,
            pulled: None,
        }),
        (Policy::Never, None) => Err(Failure {
            reason: "ErrImageNeverPull",
            message: format!(
                "Container image \"{image}\" is not present with pull policy of Never: pull it with `netlab pull {image}` or change imagePullPolicy"
            ),
        }),
        _ => match runtime::pull(store, &reference, registries, progress).await {
            Ok(pulled) => Ok(Ready {
                image: pulled.image.clone(),
                pulled: Some(pulled),
            }),
            Err(e) => Err(Failure {
                reason: "ErrImagePull",
                message: e.to_string(),
            }),
        },
    }
}

/// What one container gets: the image's outcome, except that a container
/// with `imagePullPolicy: Never` never waits on a pull another container
/// asked for (`ErrImageNeverPull` when the image is not there).
pub fn for_container(outcomes: &Outcomes, c: &Container) -> Result<Ready, Failure> {
    let image = c.image.as_deref().unwrap_or_default();
    match &outcomes[image] {
        Err(f) if policy(c) == Policy::Never && f.reason == "ErrImagePull" => Err(Failure {
            reason: "ErrImageNeverPull",
            message: format!(
                "Container image \"{image}\" is not present with pull policy of Never: pull it with `netlab pull {image}` or change imagePullPolicy"
            ),
        }),
        Ok(Ready { image: i, pulled: Some(_) }) if policy(c) == Policy::Never => Ok(Ready {
            image: i.clone(),
            pulled: None,
        }),
        other => other.clone(),
    }
}

/// Whether a pod's events say its image was pulled for it.
fn pulled_before(st: &ClusterState, pod: &Pod, image: &str) -> bool {
    let quoted = format!("Successfully pulled image \"{image}\"");
    st.events.iter().any(|e| {
        e.involved_object.kind.as_deref() == Some("Pod")
            && e.involved_object.name == pod.metadata.name
            && e.involved_object.namespace == pod.metadata.namespace
            && e.message.as_deref().is_some_and(|m| m.starts_with(&quoted))
    })
}

/// The kubelet's events for one container's image.
pub fn record(st: &mut ClusterState, pod: &Pod, c: &Container, outcome: &Result<Ready, Failure>) {
    let who = events::involved("Pod", &pod.metadata);
    let image = c.image.clone().unwrap_or_default();
    let now = chrono::Utc::now();
    match outcome {
        // Pulled for this pod already (by `up`, before the lab's process
        // started it): that event stands.
        Ok(Ready { pulled: None, .. }) if pulled_before(st, pod, &image) => {}
        Ok(Ready { pulled: None, .. }) => st.record(
            who,
            "Normal",
            "Pulled",
            "kubelet",
            format!("Container image \"{image}\" already present on machine"),
            now,
        ),
        Ok(Ready {
            pulled: Some(p), ..
        }) => {
            st.record(
                who.clone(),
                "Normal",
                "Pulling",
                "kubelet",
                format!("Pulling image \"{image}\""),
                now,
            );
            st.record(
                who,
                "Normal",
                "Pulled",
                "kubelet",
                format!(
                    "Successfully pulled image \"{image}\" in {} ({} downloaded from {}). Image size: {} bytes.",
                    human(p.elapsed),
                    bytes(p.downloaded),
                    p.endpoint,
                    p.size
                ),
                now,
            );
        }
        Err(f) => {
            if f.reason == "ErrImagePull" {
                st.record(
                    who.clone(),
                    "Normal",
                    "Pulling",
                    "kubelet",
                    format!("Pulling image \"{image}\""),
                    now,
                );
                st.record(
                    who.clone(),
                    "Warning",
                    "Failed",
                    "kubelet",
                    format!("Failed to pull image \"{image}\": {}", f.message),
                    now,
                );
            } else {
                st.record(
                    who.clone(),
                    "Warning",
                    "Failed",
                    "kubelet",
                    f.message.clone(),
                    now,
                );
            }
            st.record(
                who,
                "Warning",
                "Failed",
                "kubelet",
                format!("Error: {}", f.reason),
                now,
            );
        }
    }
}

/// The kubelet's image pull back-off: 10 s, doubling, at most 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    let secs = 10u64.saturating_mul(1 << failures.saturating_sub(1).min(5));
    Duration::from_secs(secs.min(300))
}

fn human(d: Duration) -> String {
    if d.as_secs() >= 1 {
        format!("{:.3}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}

pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(image: &str, policy: Option<&str>) -> Container {
        Container {
            name: "c".into(),
            image: Some(image.into()),
            image_pull_policy: policy.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn kubernetes_default_policies() {
        assert_eq!(policy(&c("nginx", None)), Policy::Always);
        assert_eq!(policy(&c("nginx:latest", None)), Policy::Always);
        assert_eq!(policy(&c("nginx:1.25", None)), Policy::IfNotPresent);
        let d = format!("nginx@sha256:{}", "a".repeat(64));
        assert_eq!(policy(&c(&d, None)), Policy::IfNotPresent);
        assert_eq!(policy(&c("nginx", Some("Never"))), Policy::Never);
        assert_eq!(policy(&c("nginx:1", Some("Always"))), Policy::Always);
    }

    #[test]
    fn strongest_policy_per_image() {
        let cs = [
            c("nginx:1", Some("Never")),
            c("nginx:1", Some("Always")),
            c("busybox:1", None),
        ];
        assert_eq!(
            wanted(cs.iter()),
            vec![
                ("busybox:1".to_string(), Policy::IfNotPresent),
                ("nginx:1".to_string(), Policy::Always)
            ]
        );
    }

    #[test]
    fn pull_backoff() {
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(2), Duration::from_secs(20));
        assert_eq!(backoff(20), Duration::from_secs(300));
    }
}
