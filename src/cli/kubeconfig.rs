//! The lab's kubeconfig entries, as `kind create cluster` writes them: a
//! cluster, a user and a context named `netlab-<lab>`, merged into the
//! invoking user's kubeconfig (`$KUBECONFIG`'s first file, else
//! `~/.kube/config` of `$SUDO_USER` when run by sudo), made current; `down`
//! removes exactly those three entries again. `netlab kubeconfig` prints a
//! standalone file for scripts and CI.
//!
//! The file is edited as YAML values, so whatever else it holds (other
//! clusters, preferences, extensions) is kept as it was. Writers of the same
//! file (two `up`s, kubectl) are kept apart by client-go's own lock file
//! (`<file>.lock`, created exclusively), and the new file replaces the old by
//! rename, so a reader never sees half a file.

use crate::api::pki::LabPki;
use anyhow::{bail, Context, Result};
use base64::Engine;
use serde_yaml_ng::{Mapping, Value};
use std::path::{Path, PathBuf};

pub fn context_name(lab: &str) -> String {
    format!("netlab-{lab}")
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn entry(key: &str, name: &str, body: Value) -> Value {
    let mut m = Mapping::new();
    m.insert("name".into(), name.into());
    m.insert(key.into(), body);
    Value::Mapping(m)
}

fn map(pairs: &[(&str, Value)]) -> Value {
    let mut m = Mapping::new();
    for (k, v) in pairs {
        m.insert((*k).into(), v.clone());
    }
    Value::Mapping(m)
}

/// The lab's cluster, user and context entries.
fn entries(lab: &str, server: &str, pki: &LabPki) -> [Value; 3] {
    let name = context_name(lab);
    [
        entry(
            "cluster",
            &name,
            map(&[
                ("certificate-authority-data", b64(&pki.ca_cert).into()),
                ("server", server.into()),
            ]),
        ),
        entry(
            "user",
            &name,
            map(&[
                ("client-certificate-data", b64(&pki.admin_cert).into()),
                ("client-key-data", b64(&pki.admin_key).into()),
            ]),
        ),
        entry(
            "context",
            &name,
            map(&[
                ("cluster", name.clone().into()),
                ("user", name.clone().into()),
            ]),
        ),
    ]
}

const LISTS: [&str; 3] = ["clusters", "users", "contexts"];

/// A kubeconfig holding only the lab.
pub fn standalone(lab: &str, server: &str, pki: &LabPki) -> String {
    let mut doc = Mapping::new();
    doc.insert("apiVersion".into(), "v1".into());
    doc.insert("kind".into(), "Config".into());
    for (list, e) in LISTS.iter().zip(entries(lab, server, pki)) {
        doc.insert((*list).into(), Value::Sequence(vec![e]));
    }
    doc.insert("current-context".into(), context_name(lab).into());
    doc.insert("preferences".into(), Value::Mapping(Mapping::new()));
    serde_yaml_ng::to_string(&Value::Mapping(doc)).expect("YAML serializes")
}

fn named(v: &Value, name: &str) -> bool {
    v.get("name").and_then(Value::as_str) == Some(name)
}

/// `text` (an existing kubeconfig, maybe empty) with the lab's entries
/// added or replaced, and its context current.
pub fn merged(text: &str, lab: &str, server: &str, pki: &LabPki) -> Result<String> {
    let mut doc = parse(text)?;
    let name = context_name(lab);
    for (list, e) in LISTS.iter().zip(entries(lab, server, pki)) {
        let seq = doc
            .entry((*list).into())
            .or_insert_with(|| Value::Sequence(Vec::new()));
        if seq.is_null() {
            *seq = Value::Sequence(Vec::new());
        }
        let Some(seq) = seq.as_sequence_mut() else {
            bail!("its {list:?} is not a list");
        };
        match seq.iter_mut().find(|v| named(v, &name)) {
            Some(old) => *old = e,
            None => seq.push(e),
        }
    }
    doc.insert("current-context".into(), name.into());
    Ok(serde_yaml_ng::to_string(&Value::Mapping(doc))?)
}

/// `text` without the lab's entries; the current context is cleared when it
/// was the lab's (as `kind delete cluster` does). None when nothing changes.
pub fn removed(text: &str, lab: &str) -> Result<Option<String>> {
    let mut doc = parse(text)?;
    let name = context_name(lab);
    let mut changed = false;
    for list in LISTS {
        if let Some(seq) = doc.get_mut(list).and_then(Value::as_sequence_mut) {
            let before = seq.len();
            seq.retain(|v| !named(v, &name));
            changed |= seq.len() != before;
        }
    }
    if doc.get("current-context").and_then(Value::as_str) == Some(name.as_str()) {
        doc.insert("current-context".into(), "".into());
        changed = true;
    }
    Ok(changed.then(|| serde_yaml_ng::to_string(&Value::Mapping(doc)).expect("YAML serializes")))
}

fn parse(text: &str) -> Result<Mapping> {
    if text.trim().is_empty() {
        let mut m = Mapping::new();
        m.insert("apiVersion".into(), "v1".into());
        m.insert("kind".into(), "Config".into());
        m.insert("preferences".into(), Value::Mapping(Mapping::new()));
        return Ok(m);
    }
    match serde_yaml_ng::from_str::<Value>(text)? {
        Value::Mapping(m) => Ok(m),
        _ => bail!("it is not a kubeconfig (a YAML mapping)"),
    }
}

/// Whose kubeconfig `up` edits: the file, and the user to own it when it
/// is created (the sudo caller's, so that `kubectl` works without sudo).
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub path: PathBuf,
    pub owner: Option<(u32, u32)>,
}

/// `$KUBECONFIG`'s first file, else `~/.kube/config` of `$SUDO_USER`, else
/// `$HOME/.kube/config`, as kind chooses.
pub fn target() -> Target {
    let sudo = || -> Option<(PathBuf, (u32, u32))> {
        let user = std::env::var("SUDO_USER").ok().filter(|u| u != "root")?;
        let u = nix::unistd::User::from_name(&user).ok()??;
        Some((u.dir, (u.uid.as_raw(), u.gid.as_raw())))
    };
    let owner = sudo().map(|(_, o)| o);
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()))
    {
        return Target { path: first, owner };
    }
    let home = sudo()
        .map(|(h, _)| h)
        .or_else(|| std::env::var_os("HOME").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/root"));
    Target {
        path: home.join(".kube").join("config"),
        owner,
    }
}

/// Holds client-go's lock on a kubeconfig (`<file>.lock`, created with
/// O_EXCL; removed on drop).
struct FileLock(PathBuf);

impl FileLock {
    fn acquire(path: &Path) -> Result<FileLock> {
        let lock = PathBuf::from(format!("{}.lock", path.display()));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock)
            {
                Ok(_) => return Ok(FileLock(lock)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if std::time::Instant::now() > deadline {
                        bail!(
                            "{} is locked (by kubectl or another netlab): if no such command runs, remove the lock file",
                            lock.display()
                        );
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(e).with_context(|| format!("locking {}", path.display())),
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Rewrites `target`'s file with `edit` (given its text, "" if absent; None
/// leaves the file as it is), under the lock, keeping or setting its owner,
/// mode 0600.
fn edit(target: &Target, edit: impl FnOnce(&str) -> Result<Option<String>>) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let path = &target.path;
    let what = || format!("kubeconfig {}", path.display());
    let parent = path.parent().unwrap_or(Path::new("."));
    if !parent.exists() {
        std::fs::create_dir_all(parent).with_context(what)?;
        if let Some((uid, gid)) = target.owner {
            let _ = std::os::unix::fs::chown(parent, Some(uid), Some(gid));
        }
    }
    let _lock = FileLock::acquire(path)?;
    let (text, owner) = match std::fs::read_to_string(path) {
        Ok(t) => {
            let m = std::fs::metadata(path).with_context(what)?;
            (t, Some((m.uid(), m.gid())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), target.owner),
        Err(e) => return Err(e).with_context(what),
    };
    let Some(new) = edit(&text).with_context(what)? else {
        return Ok(());
    };
    let tmp = PathBuf::from(format!("{}.netlab-{}", path.display(), std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(what)?;
    f.write_all(new.as_bytes()).with_context(what)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).with_context(what)?;
    }
    drop(f);
    std::fs::rename(&tmp, path).with_context(what)
}

/// Adds the lab's context to `target`'s kubeconfig and makes it current.
pub fn add(target: &Target, lab: &str, server: &str, pki: &LabPki) -> Result<()> {
    edit(target, |text| merged(text, lab, server, pki).map(Some))
}

/// Removes the lab's entries from `target`'s kubeconfig (nothing if absent).
pub fn remove(target: &Target, lab: &str) -> Result<()> {
    if !target.path.exists() {
        return Ok(());
    }
    edit(target, |text| removed(text, lab))
}

/// Where a lab records which kubeconfig `up` edited, for `down`.
pub fn record_file(lab: &str) -> PathBuf {
    crate::paths::lab_dir(lab).join("kubeconfig.path")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pki() -> LabPki {
        LabPki {
            ca_cert: "CA".into(),
            ca_key: "CAKEY".into(),
            server_cert: "S".into(),
            server_key: "SK".into(),
            admin_cert: "A".into(),
            admin_key: "AK".into(),
            sa_key: "SA".into(),
        }
    }

    const OTHER: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: kind-kind\n  cluster:\n    server: https://127.0.0.1:6443\nusers:\n- name: kind-kind\n  user:\n    token: t\ncontexts:\n- name: kind-kind\n  context:\n    cluster: kind-kind\n    user: kind-kind\ncurrent-context: kind-kind\npreferences: {}\nextensions:\n- name: x\n  extension: {a: 1}\n";

    #[test]
    fn merge_adds_three_entries_and_remove_takes_exactly_them() {
        let m = merged(OTHER, "web", "https://127.0.0.1:4000", &pki()).unwrap();
        let v: Value = serde_yaml_ng::from_str(&m).unwrap();
        for list in LISTS {
            assert_eq!(v[list].as_sequence().unwrap().len(), 2, "{list}");
        }
        assert_eq!(v["current-context"], "netlab-web");
        assert_eq!(
            v["clusters"][1]["cluster"]["server"],
            "https://127.0.0.1:4000"
        );
        assert_eq!(v["users"][1]["user"]["client-certificate-data"], b64("A"));
        // Merging again replaces rather than duplicates.
        let again = merged(&m, "web", "https://127.0.0.1:4001", &pki()).unwrap();
        let v2: Value = serde_yaml_ng::from_str(&again).unwrap();
        assert_eq!(v2["clusters"].as_sequence().unwrap().len(), 2);
        let back = removed(&again, "web").unwrap().unwrap();
        let b: Value = serde_yaml_ng::from_str(&back).unwrap();
        let orig: Value = serde_yaml_ng::from_str(OTHER).unwrap();
        for key in ["clusters", "users", "contexts", "extensions", "preferences"] {
            assert_eq!(b[key], orig[key], "{key}");
        }
        assert_eq!(b["current-context"], "");
        assert!(removed(OTHER, "web").unwrap().is_none());
    }

    #[test]
    fn standalone_and_empty_files() {
        let s = standalone("a", "https://127.0.0.1:1", &pki());
        let v: Value = serde_yaml_ng::from_str(&s).unwrap();
        assert_eq!(v["current-context"], "netlab-a");
        assert_eq!(v["contexts"][0]["context"]["user"], "netlab-a");
        let m = merged("", "a", "https://127.0.0.1:1", &pki()).unwrap();
        let v: Value = serde_yaml_ng::from_str(&m).unwrap();
        assert_eq!(v["kind"], "Config");
        assert!(merged("- a\n", "a", "s", &pki()).is_err());
    }

    #[test]
    fn edits_keep_the_owner_and_leave_no_lock() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let t = Target {
            path: d.path().join("sub/config"),
            owner: None,
        };
        add(&t, "a", "https://127.0.0.1:1", &pki()).unwrap();
        add(&t, "b", "https://127.0.0.1:2", &pki()).unwrap();
        let mode = std::fs::metadata(&t.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        remove(&t, "a").unwrap();
        let v: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&t.path).unwrap()).unwrap();
        assert_eq!(v["contexts"].as_sequence().unwrap().len(), 1);
        assert_eq!(v["current-context"], "netlab-b");
        assert_eq!(std::fs::read_dir(d.path().join("sub")).unwrap().count(), 1);
    }
}
