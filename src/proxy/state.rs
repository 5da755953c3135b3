//! The proxier's state file: what the node's table was made from, so that
//! a later netlab process diffs instead of rewriting the table.
//!
//! JSON lines. The first line names the format version, the namespace and
//! the node model; every further line is one service's model (or its
//! removal), later lines overriding earlier ones. A sync appends the lines
//! of the services it changed (O(change) bytes); a full sync, or a log
//! grown longer than the services it describes, rewrites the file whole
//! (temp file + rename: a crash leaves the old file or the new one).
//!
//! The file holds models, not rules: the loader regenerates each service's
//! rules (with the endpoints-map slots recorded for it, see
//! `rules::Slots`), and checks them against the hash recorded when they were
//! applied. A netlab whose rule generator changed since then sees a
//! mismatch and rewrites the table rather than diffing against rules the
//! kernel does not hold. A torn last line (a crash while appending) makes
//! the file unreadable, which only costs a full rewrite.

use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::ProxyError;
use super::model::{Node, Service};
use super::ruleset::FxHasher;
use super::ServiceKey;

/// Format version; a file with another version is ignored (and the table
/// rewritten).
const VERSION: u32 = 3;

/// The endpoints-map slots of one service, by owner name.
pub type SlotList = Vec<(String, u16)>;

#[derive(Serialize, Deserialize)]
struct Header {
    version: u32,
    netns: String,
    node: Node,
    base_hash: u64,
}

#[derive(Serialize, Deserialize)]
struct Record {
    key: ServiceKey,
    /// None: the service was removed.
    service: Option<Service>,
    #[serde(default)]
    hash: u64,
    #[serde(default)]
    slots: SlotList,
}

#[derive(Serialize)]
struct RecordRef<'a> {
    key: &'a ServiceKey,
    service: Option<&'a Service>,
    hash: u64,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    slots: &'a [(String, u16)],
}

/// One service as the file records it: its model, the hash of the rules
/// applied for it, and their slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub key: ServiceKey,
    pub service: Service,
    pub hash: u64,
    pub slots: SlotList,
}

/// [`Saved`], borrowed, for writing.
pub type SavedRef<'a> = (&'a ServiceKey, &'a Service, u64, &'a [(String, u16)]);

/// What a state file says.
pub struct Loaded {
    pub node: Node,
    pub base_hash: u64,
    /// In key order.
    pub services: Vec<Saved>,
}

/// A stable hash of generated rules (FxHash over the derived `Hash`).
pub fn hash_of<T: Hash>(t: &T) -> u64 {
    let mut h = FxHasher::default();
    t.hash(&mut h);
    h.finish()
}

/// Read the file. None (with a warning) if it is missing, torn, foreign or
/// of another version.
pub fn read(netns: &str, path: &Path) -> Result<Option<Loaded>, ProxyError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => String::new(),
        Err(source) => {
            return Err(ProxyError::State {
                op: "reading",
                netns: netns.to_string(),
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let warn = |why: &str| {
        tracing::warn!(file = %path.display(), netns, "proxy state file {why}; rewriting the table");
        Ok(None)
    };
    let mut lines = text.split_inclusive('\n');
    let Some(Ok(header)) = lines
        .next()
        .map(|l| serde_json::from_str::<Header>(l.trim_end()))
    else {
        return warn("is corrupt or of an older format");
    };
    if header.version != VERSION || header.netns != netns {
        return warn("is for another version or namespace");
    }
    let mut services = std::collections::BTreeMap::new();
    for line in lines {
        // A line without its newline was cut short by a crash.
        let Some(line) = line.strip_suffix('\n') else {
            return warn("ends with a torn line");
        };
        match serde_json::from_str::<Record>(line) {
            Ok(Record {
                key,
                service: Some(s),
                hash,
                slots,
            }) => {
                services.insert(key, (s, hash, slots));
            }
            Ok(Record {
                key, service: None, ..
            }) => {
                services.remove(&key);
            }
            Err(_) => return warn("is corrupt"),
        }
    }
    Ok(Some(Loaded {
        node: header.node,
        base_hash: header.base_hash,
        services: services
            .into_iter()
            .map(|(key, (service, hash, slots))| Saved {
                key,
                service,
                hash,
                slots,
            })
            .collect(),
    }))
}

/// Write the whole file atomically.
pub fn write(
    path: &Path,
    netns: &str,
    node: &Node,
    base_hash: u64,
    services: &[SavedRef<'_>],
) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(name);
    let write = || -> io::Result<()> {
        let mut f = io::BufWriter::new(std::fs::File::create(&tmp)?);
        let header = Header {
            version: VERSION,
            netns: netns.to_string(),
            node: node.clone(),
            base_hash,
        };
        serde_json::to_writer(&mut f, &header)?;
        f.write_all(b"\n")?;
        for (key, s, hash, slots) in services {
            serde_json::to_writer(
                &mut f,
                &RecordRef {
                    key,
                    service: Some(s),
                    hash: *hash,
                    slots,
                },
            )?;
            f.write_all(b"\n")?;
        }
        f.flush()?;
        std::fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Append records of changed (Some) and removed (None) services, in one
/// write.
pub fn append(path: &Path, records: &[(&ServiceKey, Option<SavedRef<'_>>)]) -> io::Result<()> {
    let mut buf = Vec::new();
    for (key, s) in records {
        serde_json::to_writer(
            &mut buf,
            &RecordRef {
                key,
                service: s.map(|s| s.1),
                hash: s.map_or(0, |s| s.2),
                slots: s.map_or(&[][..], |s| s.3),
            },
        )?;
        buf.push(b'\n');
    }
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    f.write_all(&buf)
}

/// Identity and size of the file, to notice another process's writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    ino: u64,
    len: u64,
    mtime_ns: i64,
}

impl Stamp {
    pub fn of(path: &Path) -> Option<Stamp> {
        let m = std::fs::metadata(path).ok()?;
        Some(Stamp {
            ino: m.ino(),
            len: m.len(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::model::Protocol;
    use crate::proxy::ServicePort;

    fn node() -> Node {
        Node {
            name: "n".into(),
            node_ips: vec![],
            cluster_cidr: "10.244.0.0/16".parse().unwrap(),
            service_cidr: "10.0.0.0/16".parse().unwrap(),
            host_ports: vec![],
            partitioned: vec![],
        }
    }

    fn svc(name: &str, port: u16) -> Service {
        Service {
            namespace: "default".into(),
            name: name.into(),
            cluster_ip: Some("10.0.0.1".parse().unwrap()),
            external_ips: vec![],
            ports: vec![ServicePort {
                name: String::new(),
                protocol: Protocol::Tcp,
                port,
                node_port: None,
                endpoints: vec![],
            }],
            affinity_timeout: None,
            external_traffic_local: false,
            source_ranges: vec![],
            load_balancer_ips: vec![],
        }
    }

    #[test]
    fn appended_records_override_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let (a, b) = (svc("a", 1), svc("b", 2));
        let (ka, kb) = (
            ("default".to_string(), "a".to_string()),
            ("default".to_string(), "b".to_string()),
        );
        let slots = vec![("default/a/tcp/1".to_string(), 4)];
        write(
            &path,
            "ns",
            &node(),
            7,
            &[(&ka, &a, 1, &[]), (&kb, &b, 2, &slots)],
        )
        .unwrap();
        let a2 = svc("a", 3);
        append(&path, &[(&ka, Some((&ka, &a2, 3, &slots))), (&kb, None)]).unwrap();
        let l = read("ns", &path).unwrap().unwrap();
        assert_eq!(l.base_hash, 7);
        assert_eq!(
            l.services,
            vec![Saved {
                key: ka,
                service: a2,
                hash: 3,
                slots
            }]
        );
        // Another namespace's file, or a torn one, is not used.
        assert!(read("other", &path).unwrap().is_none());
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"key\":[\"default\",").unwrap();
        assert!(read("ns", &path).unwrap().is_none());
    }
}
