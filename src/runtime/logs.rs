//! Container log rotation, with the kubelet's defaults
//! (`containerLogMaxSize: 10Mi`, `containerLogMaxFiles: 5`).
//!
//! runc hands the container our log file as its stdout and stderr (no shim
//! copies the stream), so the live file cannot be renamed and reopened as
//! the kubelet asks containerd to. It is rotated the way logrotate's
//! `copytruncate` does instead: its bytes are copied into numbered files
//! (`c.log.1` newest … `c.log.4` oldest), then it is truncated; the
//! container's descriptor is `O_APPEND`, so its next write lands at the
//! start of the now empty file. What the container writes between the copy
//! and the truncation (microseconds) is lost, which is copytruncate's known
//! price. A live file that grew past several sizes between two checks is
//! cut into several files, so no file ends much larger than the maximum.
//! `netlab logs` reads the rotated files, oldest first, then the live one.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// When and how much to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// A live file larger than this is rotated.
    pub max_size: u64,
    /// Files per container, the live one included.
    pub max_files: usize,
}

/// The kubelet's defaults.
pub const DEFAULT: Policy = Policy {
    max_size: 10 << 20,
    max_files: 5,
};

/// How often the controller looks (the kubelet's containerLogMonitorInterval).
pub const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Wakes the followers of logs (`kubectl logs -f`, attach to a container
/// without stdio of its own) when this process wrote a record into one, as
/// it does for the containers whose output it copies: they see a line as it
/// comes rather than at their next look.
static WRITTEN: std::sync::LazyLock<tokio::sync::watch::Sender<u64>> =
    std::sync::LazyLock::new(|| tokio::sync::watch::channel(0).0);

/// A record was written into a log (see [`WRITTEN`]).
pub(super) fn wrote() {
    WRITTEN.send_modify(|n| *n = n.wrapping_add(1));
}

/// How long a follower waits for a write it was not told of (a container
/// that writes into its log itself, a rotation) before it looks anyway.
pub const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// What a container's live log gains from a point on, as text: the one
/// way a log is followed.
pub struct Follower {
    path: PathBuf,
    pos: u64,
    records: super::crilog::Reader,
    written: tokio::sync::watch::Receiver<u64>,
}

impl Follower {
    /// From the log's end now.
    pub fn from_end(path: PathBuf, options: super::crilog::Options) -> Follower {
        let mut written = WRITTEN.subscribe();
        written.mark_unchanged();
        Follower {
            pos: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
            path,
            records: super::crilog::Reader::new(options),
            written,
        }
    }

    /// Waits until a log was written, or [`FOLLOW_EVERY`].
    pub async fn wait(&mut self) {
        let _ = tokio::time::timeout(FOLLOW_EVERY, self.written.changed()).await;
    }

    /// The text of the lines the log gained since the last read (empty
    /// when it gained none, or only the start of a line).
    pub fn read(&mut self) -> Vec<u8> {
        let mut chunk = Vec::new();
        if let Ok(mut f) = std::fs::File::open(&self.path) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            if len < self.pos {
                self.pos = 0; // rotated: copied away, then truncated
            }
            if len > self.pos && f.seek(SeekFrom::Start(self.pos)).is_ok() {
                let _ = f.read_to_end(&mut chunk);
                self.pos += chunk.len() as u64;
            }
        }
        let mut text = Vec::new();
        self.records.feed(&chunk, &mut text);
        text
    }
}

/// `c.log.N`: the N-th newest rotated file of a live log.
pub fn rotated(log: &Path, n: usize) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// A cut of the live file: bytes `start..end` go to rotated file `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    pub start: u64,
    pub end: u64,
    pub index: usize,
}

/// How a live file of `len` bytes is cut (empty: leave it). Also returns by
/// how much existing rotated files move up.
pub fn plan(len: u64, p: Policy) -> (Vec<Cut>, usize) {
    if len <= p.max_size || p.max_files < 2 || p.max_size == 0 {
        return (Vec::new(), 0);
    }
    let n = len.div_ceil(p.max_size) as usize;
    let keep = p.max_files - 1;
    let cuts = (0..n)
        .map(|k| Cut {
            start: k as u64 * p.max_size,
            end: ((k as u64 + 1) * p.max_size).min(len),
            index: n - k,
        })
        .filter(|c| c.index <= keep)
        .collect();
    (cuts, n)
}

/// Rotates one live log if it is too large; true when it did.
pub fn rotate(log: &Path, p: Policy) -> io::Result<bool> {
    let len = match std::fs::metadata(log) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let (cuts, shift) = plan(len, p);
    if shift == 0 {
        return Ok(false);
    }
    let keep = p.max_files - 1;
    // Older files move up; those that fall off the end go.
    for j in (1..=keep).rev() {
        let from = rotated(log, j);
        if !from.exists() {
            continue;
        }
        if j + shift <= keep {
            std::fs::rename(&from, rotated(log, j + shift))?;
        } else {
            std::fs::remove_file(&from)?;
        }
    }
    let mut live = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(log)?;
    for c in &cuts {
        live.seek(SeekFrom::Start(c.start))?;
        let mut out = std::fs::File::create(rotated(log, c.index))?;
        io::copy(&mut (&mut live).take(c.end - c.start), &mut out)?;
        out.flush()?;
    }
    // What came after `len` while copying stays in the live file.
    let mut rest = Vec::new();
    live.seek(SeekFrom::Start(len))?;
    live.read_to_end(&mut rest)?;
    live.set_len(0)?;
    if !rest.is_empty() {
        live.write_all(&rest)?;
    }
    Ok(true)
}

/// Every live container log of a lab's pods (`<pod dir>/<container>.log`).
pub fn lab_logs(pods_dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(pods_dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|pod| std::fs::read_dir(pod.path()).ok())
        .flat_map(|files| files.flatten().map(|f| f.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect()
}

/// Rotates every log under `pods_dir` that needs it; returns the errors.
pub fn rotate_all(pods_dir: &Path, p: Policy) -> Vec<String> {
    lab_logs(pods_dir)
        .into_iter()
        .filter_map(|log| {
            rotate(&log, p)
                .err()
                .map(|e| format!("rotating {}: {e}", log.display()))
        })
        .collect()
}

/// A container's whole log: the rotated files, oldest first, then the live one.
pub fn read_all(log: &Path, p: Policy) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    for n in (1..p.max_files).rev() {
        match std::fs::read(rotated(log, n)) {
            Ok(b) => out.extend(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    out.extend(std::fs::read(log)?);
    Ok(out)
}

/// `c.log.previous`: the log of the container's run before its last
/// restart, what `kubectl logs --previous` reads.
pub fn previous(log: &Path) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(".previous");
    PathBuf::from(s)
}

/// Before a container starts again, as the kubelet keeps it: the live log
/// becomes the previous one (replacing the one before), its rotated files
/// go, and the new run starts with an empty log.
pub fn start_over(log: &Path, p: Policy) -> io::Result<()> {
    match std::fs::rename(log, previous(log)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    for n in 1..p.max_files {
        match std::fs::remove_file(rotated(log, n)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// The last `n` lines of a log (all of it when `n` is negative), as
/// `kubectl logs --tail` asks for them.
pub fn last_lines(log: &[u8], n: i64) -> &[u8] {
    if n < 0 {
        return log;
    }
    if n == 0 {
        return &[];
    }
    let trimmed = log.strip_suffix(b"\n").unwrap_or(log);
    let mut count = 0;
    for (i, c) in trimmed.iter().enumerate().rev() {
        if *c == b'\n' {
            count += 1;
            if count == n {
                return &log[i + 1..];
            }
        }
    }
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_keeps_the_last_run_as_previous() {
        // A pods directory of its own: `lab_logs` looks one level down.
        let dir = tempfile::tempdir().unwrap();
        let pod = dir.path().join("pod");
        std::fs::create_dir(&pod).unwrap();
        let log = pod.join("c.log");
        std::fs::write(&log, "run 1\n").unwrap();
        std::fs::write(rotated(&log, 1), "run 1, older\n").unwrap();
        start_over(&log, P).unwrap();
        assert!(!log.exists() && !rotated(&log, 1).exists());
        assert_eq!(std::fs::read_to_string(previous(&log)).unwrap(), "run 1\n");
        std::fs::write(&log, "run 2\n").unwrap();
        start_over(&log, P).unwrap();
        assert_eq!(std::fs::read_to_string(previous(&log)).unwrap(), "run 2\n");
        // Nothing to keep: nothing changes.
        start_over(&log, P).unwrap();
        assert_eq!(std::fs::read_to_string(previous(&log)).unwrap(), "run 2\n");
        // Not a live log: never rotated.
        assert_eq!(lab_logs(dir.path()), Vec::<PathBuf>::new());
    }

    #[test]
    fn tail_lines() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(last_lines(b"a\nb\nc\n", -1), b"a\nb\nc\n");
        assert_eq!(last_lines(b"a\nb\nc\n", 5), b"a\nb\nc\n");
        assert_eq!(last_lines(b"a\nb\nc", 1), b"c");
        assert_eq!(last_lines(b"a\nb\nc\n", 0), b"");
    }

    const P: Policy = Policy {
        max_size: 10,
        max_files: 3,
    };

    #[test]
    fn cuts() {
        let cut = |start, end, index| Cut { start, end, index };
        let cases = [
            (10, (vec![], 0)),
            (11, (vec![cut(0, 10, 2), cut(10, 11, 1)], 2)),
            (20, (vec![cut(0, 10, 2), cut(10, 20, 1)], 2)),
            (35, (vec![cut(20, 30, 2), cut(30, 35, 1)], 4)),
        ];
        for (len, want) in cases {
            assert_eq!(plan(len, P), want, "len {len}");
        }
    }

    #[test]
    fn rotation_keeps_the_newest_bytes_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("c.log");
        let mut all = String::new();
        for round in 0..6 {
            let line = format!("round {round}\n"); // 8 bytes
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap();
            f.write_all(line.as_bytes()).unwrap();
            all.push_str(&line);
            rotate(&log, P).unwrap();
            let whole = String::from_utf8(read_all(&log, P).unwrap()).unwrap();
            assert!(all.ends_with(&whole), "round {round}: {whole:?}");
            for n in 1..=4 {
                if let Ok(m) = std::fs::metadata(rotated(&log, n)) {
                    assert!(n < P.max_files, "file {n} should not exist");
                    assert!(m.len() <= P.max_size);
                }
            }
            assert!(std::fs::metadata(&log).unwrap().len() <= P.max_size);
        }
        // 48 bytes written; at most 3 files of 10 bytes kept, the newest.
        let whole = read_all(&log, P).unwrap();
        assert!(whole.len() <= 30 && whole.len() > 10, "{}", whole.len());
        assert!(!rotate(&log, P).unwrap());
    }
}
