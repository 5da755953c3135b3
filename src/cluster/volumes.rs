//! Pod volumes, as the kubelet sees them: which files a `secret` or
//! `configMap` volume holds (with `items`, `defaultMode`, `mode`,
//! `optional`), which volumes are `emptyDir`s, and where each container
//! mounts them. Pure: the runtime layer writes the files
//! (`runtime::volumes`) and the bundle bind-mounts them.
//!
//! File modes: a configMap's files default to 0644 as in Kubernetes; a
//! secret's default to 0600 (Kubernetes says 0644, inside a tmpfs only
//! root can reach; netlab's files live under `/run/netlab`, so it is
//! stricter). `defaultMode` and `items[].mode` set them explicitly.

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, KeyToPath, PodSpec, ProjectedVolumeSource, Secret,
    ServiceAccountTokenProjection, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

pub const SECRET_DEFAULT_MODE: u32 = 0o600;
pub const CONFIG_MAP_DEFAULT_MODE: u32 = 0o644;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeKind {
    Secret,
    ConfigMap,
    EmptyDir,
    /// `projected`: a ServiceAccount token, ConfigMap and Secret keys, the
    /// pod's own fields (what `cluster::access` mounts in every pod).
    Projected,
}

impl VolumeKind {
    /// Secrets and ConfigMaps are mounted read-only, whatever the mount says
    /// (Kubernetes since 1.9.4).
    pub fn read_only(self) -> bool {
        matches!(
            self,
            VolumeKind::Secret | VolumeKind::ConfigMap | VolumeKind::Projected
        )
    }
}

/// One file of a projected volume.
#[derive(Clone, PartialEq, Eq)]
pub struct File {
    /// Relative path inside the volume (`tls.crt`, or an item's `a/b.conf`).
    pub path: String,
    pub mode: u32,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for File {
    // Never print the contents: they may be a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "File({}, {:o}, {} bytes)",
            self.path,
            self.mode,
            self.data.len()
        )
    }
}

/// A volume of a pod, ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodVolume {
    pub name: String,
    pub kind: VolumeKind,
    /// The files (secret, configMap); empty for an emptyDir.
    pub files: Vec<File>,
}

/// Why a volume cannot be set up yet: the kubelet's FailedMount message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume {volume:?} : {message}")]
pub struct MountError {
    pub volume: String,
    pub message: String,
}

/// What only the kubelet has for a projected volume: the pod (for its
/// `downwardAPI` fields) and a token for its ServiceAccount.
pub struct Projections<'a> {
    pub pod: &'a ObjectMeta,
    pub token: &'a dyn Fn(&ServiceAccountTokenProjection) -> Result<Vec<u8>, String>,
}

/// A key's value in a Secret or ConfigMap of the namespace.
fn secret_data<'a>(
    secrets: impl IntoIterator<Item = &'a Secret>,
    namespace: &str,
    name: &str,
) -> Option<BTreeMap<String, Vec<u8>>> {
    secrets
        .into_iter()
        .find(|s| {
            s.metadata.name.as_deref() == Some(name)
                && super::state::namespace(&s.metadata) == namespace
        })
        .map(|s| {
            s.data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect()
        })
}

fn config_map_data<'a>(
    config_maps: impl IntoIterator<Item = &'a ConfigMap>,
    namespace: &str,
    name: &str,
) -> Option<BTreeMap<String, Vec<u8>>> {
    config_maps
        .into_iter()
        .find(|c| {
            c.metadata.name.as_deref() == Some(name)
                && super::state::namespace(&c.metadata) == namespace
        })
        .map(|c| {
            c.data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                .chain(
                    c.binary_data
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.0.clone())),
                )
                .collect()
        })
}

/// The files of a `projected` volume, source by source.
fn projected<'a>(
    src: &ProjectedVolumeSource,
    namespace: &str,
    secrets: impl IntoIterator<Item = &'a Secret> + Copy,
    config_maps: impl IntoIterator<Item = &'a ConfigMap> + Copy,
    extra: Option<&Projections<'_>>,
) -> Result<Vec<File>, String> {
    let mode = mode_of(src.default_mode, CONFIG_MAP_DEFAULT_MODE);
    let mut files = Vec::new();
    for p in src.sources.iter().flatten() {
        if let Some(t) = &p.service_account_token {
            let extra = extra.ok_or("no ServiceAccount token here")?;
            files.push(File {
                path: t.path.clone(),
                mode,
                data: (extra.token)(t)?,
            });
        }
        if let Some(c) = &p.config_map {
            let optional = c.optional.unwrap_or(false);
            let data = match config_map_data(config_maps, namespace, &c.name) {
                Some(d) => d,
                None if optional => BTreeMap::new(),
                None => return Err(format!("configmap {:?} not found", c.name)),
            };
            files.extend(project(
                &data,
                c.items.as_deref(),
                mode,
                optional,
                "configmap",
                &c.name,
            )?);
        }
        if let Some(s) = &p.secret {
            let optional = s.optional.unwrap_or(false);
            let data = match secret_data(secrets, namespace, &s.name) {
                Some(d) => d,
                None if optional => BTreeMap::new(),
                None => return Err(format!("secret {:?} not found", s.name)),
            };
            files.extend(project(
                &data,
                s.items.as_deref(),
                mode,
                optional,
                "secret",
                &s.name,
            )?);
        }
        if let Some(d) = &p.downward_api {
            let pod = extra.ok_or("no pod fields here")?.pod;
            for item in d.items.iter().flatten() {
                let field = item.field_ref.as_ref().map(|f| f.field_path.as_str());
                let value = match field {
                    Some("metadata.namespace") => namespace.to_string(),
                    Some("metadata.name") => pod.name.clone().unwrap_or_default(),
                    Some("metadata.uid") => pod.uid.clone().unwrap_or_default(),
                    other => return Err(format!("downwardAPI: {other:?} is not supported by netlab (metadata.name, metadata.namespace, metadata.uid)")),
                };
                files.push(File {
                    path: item.path.clone(),
                    mode: mode_of(item.mode, mode),
                    data: value.into_bytes(),
                });
            }
        }
    }
    Ok(files)
}

/// The files of every volume of `spec`, from the objects that exist now.
pub fn plan<'a>(
    spec: &PodSpec,
    namespace: &str,
    secrets: impl IntoIterator<Item = &'a Secret> + Copy,
    config_maps: impl IntoIterator<Item = &'a ConfigMap> + Copy,
    extra: Option<&Projections<'_>>,
) -> Result<Vec<PodVolume>, MountError> {
    let mut out = Vec::new();
    for v in spec.volumes.iter().flatten() {
        let fail = |message: String| MountError {
            volume: v.name.clone(),
            message,
        };
        if let Some(src) = &v.secret {
            let name = src.secret_name.clone().unwrap_or_default();
            let optional = src.optional.unwrap_or(false);
            let data = match secret_data(secrets, namespace, &name) {
                Some(d) => d,
                None if optional => BTreeMap::new(),
                None => return Err(fail(format!("secret {name:?} not found"))),
            };
            let mode = mode_of(src.default_mode, SECRET_DEFAULT_MODE);
            let files = project(&data, src.items.as_deref(), mode, optional, "secret", &name)
                .map_err(fail)?;
            out.push(PodVolume {
                name: v.name.clone(),
                kind: VolumeKind::Secret,
                files,
            });
        } else if let Some(src) = &v.config_map {
            let name = src.name.clone();
            let optional = src.optional.unwrap_or(false);
            let data = match config_map_data(config_maps, namespace, &name) {
                Some(d) => d,
                None if optional => BTreeMap::new(),
                None => return Err(fail(format!("configmap {name:?} not found"))),
            };
            let mode = mode_of(src.default_mode, CONFIG_MAP_DEFAULT_MODE);
            let files = project(
                &data,
                src.items.as_deref(),
                mode,
                optional,
                "configmap",
                &name,
            )
            .map_err(fail)?;
            out.push(PodVolume {
                name: v.name.clone(),
                kind: VolumeKind::ConfigMap,
                files,
            });
        } else if let Some(src) = &v.projected {
            out.push(PodVolume {
                name: v.name.clone(),
                kind: VolumeKind::Projected,
                files: projected(src, namespace, secrets, config_maps, extra).map_err(fail)?,
            });
        } else if v.empty_dir.is_some() {
            out.push(PodVolume {
                name: v.name.clone(),
                kind: VolumeKind::EmptyDir,
                files: Vec::new(),
            });
        }
        // Other kinds are refused when the lab file is validated.
    }
    Ok(out)
}

fn mode_of(mode: Option<i32>, default: u32) -> u32 {
    mode.map(|m| m as u32 & 0o777).unwrap_or(default)
}

/// Every key as a file, or only the `items` asked for, at their paths.
fn project(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
    kind: &str,
    name: &str,
) -> Result<Vec<File>, String> {
    let Some(items) = items else {
        return Ok(data
            .iter()
            .map(|(k, v)| File {
                path: k.clone(),
                mode: default_mode,
                data: v.clone(),
            })
            .collect());
    };
    let mut files = Vec::new();
    for item in items {
        match data.get(&item.key) {
            Some(v) => files.push(File {
                path: item.path.clone(),
                mode: mode_of(item.mode, default_mode),
                data: v.clone(),
            }),
            None if optional => {}
            None => {
                return Err(format!(
                    "{kind} {name:?}: references non-existent {kind} key: {}",
                    item.key
                ))
            }
        }
    }
    Ok(files)
}

/// A bind mount of a volume into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub volume: String,
    pub mount_path: String,
    pub read_only: bool,
}

/// The container's `volumeMounts`, resolved against the pod's volumes.
pub fn mounts(c: &Container, volumes: &[PodVolume]) -> Vec<Mount> {
    c.volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            let v = volumes.iter().find(|v| v.name == m.name)?;
            Some(Mount {
                volume: v.name.clone(),
                mount_path: m.mount_path.clone(),
                read_only: v.kind.read_only() || m.read_only.unwrap_or(false),
            })
        })
        .collect()
}

/// A relative path as Kubernetes allows it in `items[].path`: not absolute,
/// no `..` element, not starting with `..`.
fn valid_item_path(p: &str) -> bool {
    !p.is_empty() && !p.starts_with('/') && !p.starts_with("..") && !p.split('/').any(|e| e == "..")
}

/// The API server's checks of `volumes` and `volumeMounts` that netlab
/// relies on; messages are relative to `path` (`spec`, `spec.template.spec`).
pub fn validate(spec: &PodSpec, path: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let volumes: &[Volume] = spec.volumes.as_deref().unwrap_or_default();
    let mut names: Vec<&str> = Vec::new();
    for (i, v) in volumes.iter().enumerate() {
        let vpath = format!("{path}.volumes[{i}]");
        if let Err(m) = crate::lab::validate::dns_label(&v.name) {
            errs.push(format!("{vpath}.name {:?} {m}", v.name));
        }
        if names.contains(&v.name.as_str()) {
            errs.push(format!("{vpath}.name {:?} is used twice", v.name));
        }
        names.push(&v.name);
        let kinds = [
            v.secret.is_some(),
            v.config_map.is_some(),
            v.empty_dir.is_some(),
            v.projected.is_some(),
        ];
        let supported = kinds.iter().filter(|k| **k).count();
        let json = serde_json::to_value(v).unwrap_or_default();
        let others: Vec<String> = json
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys())
            .filter(|k| {
                !["name", "secret", "configMap", "emptyDir", "projected"].contains(&k.as_str())
            })
            .cloned()
            .collect();
        if !others.is_empty() {
            errs.push(format!(
                "{vpath} ({}): volume type {} is not supported by netlab (use secret, configMap, projected or emptyDir)",
                v.name,
                others.join(", ")
            ));
            continue;
        }
        if supported != 1 {
            errs.push(format!(
                "{vpath} ({}): give exactly one of secret, configMap, projected or emptyDir",
                v.name
            ));
            continue;
        }
        let (items, default_mode, what) = if let Some(s) = &v.secret {
            if s.secret_name.as_deref().unwrap_or("").is_empty() {
                errs.push(format!("{vpath}.secret.secretName is required"));
            }
            (s.items.as_deref(), s.default_mode, "secret")
        } else if let Some(c) = &v.config_map {
            if c.name.is_empty() {
                errs.push(format!("{vpath}.configMap.name is required"));
            }
            (c.items.as_deref(), c.default_mode, "configMap")
        } else if let Some(p) = &v.projected {
            (None, p.default_mode, "projected")
        } else {
            (None, None, "emptyDir")
        };
        let bad_mode = |m: i32| !(0..=0o777).contains(&m);
        if let Some(m) = default_mode.filter(|m| bad_mode(*m)) {
            errs.push(format!(
                "{vpath}.{what}.defaultMode {m} must be between 0 and 0777 (octal), both inclusive"
            ));
        }
        for (j, item) in items.into_iter().flatten().enumerate() {
            let ipath = format!("{vpath}.{what}.items[{j}]");
            if item.key.is_empty() {
                errs.push(format!("{ipath}.key is required"));
            }
            if !valid_item_path(&item.path) {
                errs.push(format!(
                    "{ipath}.path {:?} must be a relative path without '..'",
                    item.path
                ));
            }
            if let Some(m) = item.mode.filter(|m| bad_mode(*m)) {
                errs.push(format!(
                    "{ipath}.mode {m} must be between 0 and 0777 (octal), both inclusive"
                ));
            }
        }
    }
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for (i, c) in containers.enumerate() {
        let mut paths: Vec<&str> = Vec::new();
        for (j, m) in c.volume_mounts.iter().flatten().enumerate() {
            let mpath = format!("{path}.containers[{i}].volumeMounts[{j}]");
            if !names.contains(&m.name.as_str()) {
                errs.push(format!(
                    "{mpath}.name {:?}: no volume of that name in {path}.volumes",
                    m.name
                ));
            }
            if !m.mount_path.starts_with('/') {
                errs.push(format!(
                    "{mpath}.mountPath {:?} must be an absolute path",
                    m.mount_path
                ));
            } else if m.mount_path.split('/').any(|e| e == "..") {
                errs.push(format!(
                    "{mpath}.mountPath {:?} must not contain '..'",
                    m.mount_path
                ));
            }
            if paths.contains(&m.mount_path.as_str()) {
                errs.push(format!(
                    "{mpath}.mountPath {:?} is used twice",
                    m.mount_path
                ));
            }
            paths.push(&m.mount_path);
            if m.sub_path.as_deref().is_some_and(|s| !s.is_empty())
                || m.sub_path_expr.as_deref().is_some_and(|s| !s.is_empty())
            {
                errs.push(format!("{mpath}: subPath is not supported by netlab"));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    /// Through the lab reader, which reads `0400` as kubectl does.
    fn pod(yaml: &str) -> PodSpec {
        let text = format!(
            "apiVersion: v1\nkind: Pod\nspec:\n{}",
            yaml.lines().map(|l| format!("  {l}\n")).collect::<String>()
        );
        let docs = crate::lab::documents::split(std::path::Path::new("t"), &text).unwrap();
        docs[0]
            .parse::<k8s_openapi::api::core::v1::Pod>()
            .unwrap()
            .spec
            .unwrap()
    }

    fn secret() -> Secret {
        serde_yaml_ng::from_str(
            "metadata: {name: nginxsecret, namespace: default}\ntype: kubernetes.io/tls\ndata: {tls.crt: Y2VydA==, tls.key: a2V5}\n",
        )
        .unwrap()
    }

    fn config_map() -> ConfigMap {
        let mut c: ConfigMap = serde_yaml_ng::from_str(
            "metadata: {name: nginxconfigmap, namespace: default}\ndata: {default.conf: 'server {}'}\n",
        )
        .unwrap();
        c.binary_data = Some(BTreeMap::from([("b".into(), ByteString(vec![0xff]))]));
        c
    }

    const SECURE: &str = "volumes:\n- name: secret-volume\n  secret: {secretName: nginxsecret}\n- name: configmap-volume\n  configMap: {name: nginxconfigmap}\n- name: scratch\n  emptyDir: {}\ncontainers:\n- name: nginxhttps\n  image: x\n  volumeMounts:\n  - {mountPath: /etc/nginx/ssl, name: secret-volume}\n  - {mountPath: /etc/nginx/conf.d, name: configmap-volume}\n  - {mountPath: /tmp/s, name: scratch}\n";

    #[test]
    fn tutorial_volumes() {
        let spec = pod(SECURE);
        assert!(validate(&spec, "spec").is_empty());
        let v = plan(&spec, "default", &[secret()], &[config_map()], None).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].kind, VolumeKind::Secret);
        let paths: Vec<(&str, u32)> = v[0]
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.mode))
            .collect();
        assert_eq!(paths, [("tls.crt", 0o600), ("tls.key", 0o600)]);
        assert_eq!(v[0].files[1].data, b"key");
        assert_eq!(v[1].files.len(), 2);
        assert_eq!(v[1].files[1].mode, 0o644);
        assert!(v[2].files.is_empty());
        let m = mounts(&spec.containers[0], &v);
        assert!(m[0].read_only && m[1].read_only && !m[2].read_only);
        assert_eq!(m[1].mount_path, "/etc/nginx/conf.d");
        // Debug never shows contents.
        assert!(!format!("{:?}", v[0]).contains("key\""));
    }

    #[test]
    fn missing_objects_and_keys() {
        let spec = pod(SECURE);
        let err = plan(&spec, "default", &[], &[config_map()], None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "MountVolume.SetUp failed for volume \"secret-volume\" : secret \"nginxsecret\" not found"
        );
        // Another namespace's secret does not count.
        assert!(plan(&spec, "other", &[secret()], &[config_map()], None).is_err());
        let optional = pod(
            "volumes:\n- name: s\n  secret: {secretName: nope, optional: true}\ncontainers: []\n",
        );
        assert!(plan(&optional, "default", &[], &[], None).unwrap()[0]
            .files
            .is_empty());
        let items = pod("volumes:\n- name: c\n  configMap:\n    name: nginxconfigmap\n    defaultMode: 0400\n    items:\n    - {key: default.conf, path: conf/site.conf}\n    - {key: b, path: bin, mode: 0755}\ncontainers: []\n");
        let v = plan(&items, "default", &[], &[config_map()], None).unwrap();
        let got: Vec<(&str, u32)> = v[0]
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.mode))
            .collect();
        assert_eq!(got, [("conf/site.conf", 0o400), ("bin", 0o755)]);
        let missing = pod("volumes:\n- name: c\n  configMap:\n    name: nginxconfigmap\n    items: [{key: nope, path: x}]\ncontainers: []\n");
        let err = plan(&missing, "default", &[], &[config_map()], None).unwrap_err();
        assert!(
            err.message.contains("non-existent configmap key: nope"),
            "{err}"
        );
    }

    #[test]
    fn validation() {
        let bad = pod("volumes:\n- name: h\n  hostPath: {path: /etc}\n- name: d\n  secret: {secretName: s, defaultMode: 4000, items: [{key: k, path: ../x}]}\n- name: d\n  emptyDir: {}\ncontainers:\n- name: c\n  image: x\n  volumeMounts:\n  - {name: nope, mountPath: rel}\n  - {name: d, mountPath: /a, subPath: x}\n");
        let errs = validate(&bad, "spec").join("\n");
        for want in [
            "hostPath is not supported",
            "defaultMode 4000",
            "../x",
            "\"d\" is used twice",
            "no volume of that name",
            "must be an absolute path",
            "subPath is not supported",
        ] {
            assert!(errs.contains(want), "{want}: {errs}");
        }
    }
}
