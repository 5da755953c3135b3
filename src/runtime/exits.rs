//! Containers' exit codes. runc leaves a started container to its
//! nearest "subreaper": the lab's process is one ([`reap_containers`]),
//! so the containers it starts become its children, and it reaps each
//! when it dies, with its wait status, through a pidfd opened when it
//! started. Its status then says `Completed` or `Error` with the real
//! exit code, and `kubectl run --restart=Never` exits with it. A
//! container adopted from an earlier process is init's child: its status
//! is read from the pidfd once init has reaped it (`PIDFD_GET_INFO`,
//! Linux 6.15+), if that happens within a second; otherwise the code is
//! not known.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

type Key = (PathBuf, String);

/// A pidfd of each container started, by runc root and id.
static WATCHED: LazyLock<Mutex<HashMap<Key, OwnedFd>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Makes this process the subreaper of what it starts: a container whose
/// runc has returned becomes its child (not init's), reaped here.
pub fn reap_containers() {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes one integer argument.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
}

/// Reaps the process behind `pidfd` if it is a child of ours that has
/// died: its wait status; None if it runs or is not our child.
fn reap(pidfd: &OwnedFd) -> Option<i32> {
    // SAFETY: a zeroed siginfo_t is valid for waitid to fill.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid with P_PIDFD takes a pidfd we own and fills `info`.
    let rc = unsafe {
        libc::waitid(
            libc::P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG,
        )
    };
    // SAFETY: si_pid/si_status are valid to read after waitid's success.
    let (pid, status, code) = unsafe { (info.si_pid(), info.si_status(), info.si_code) };
    if rc != 0 || pid == 0 {
        return None;
    }
    Some(if code == libc::CLD_EXITED {
        (status & 0xff) << 8
    } else {
        status & 0x7f // killed (or dumped) by a signal
    })
}

/// A pidfd of process `pid`.
pub fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the fd was just returned to us and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Watches container `id` (under `runc_root`), just started as `pid`.
pub fn watch(runc_root: &Path, id: &str, pid: i32) {
    if let Ok(fd) = pidfd_open(pid) {
        WATCHED
            .lock()
            .expect("watched")
            .insert((runc_root.to_path_buf(), id.to_string()), fd);
    }
}

/// The exit code of container `id`, which has died, if it was watched and
/// the kernel tells (128 + the signal for one killed by a signal, as
/// containerd says it); it is watched no more.
pub async fn exit_code(runc_root: &Path, id: &str) -> Option<i32> {
    let fd = WATCHED
        .lock()
        .expect("watched")
        .remove(&(runc_root.to_path_buf(), id.to_string()))?;
    let status = match reap(&fd) {
        Some(status) => status,
        None => wait_status(&fd).await?,
    };
    Some(if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    })
}

/// Stops watching the containers under `runc_root` that `keep` says no to
/// (those of pods that are gone), once they are dead and reaped.
pub fn retain(runc_root: &Path, keep: impl Fn(&str) -> bool) {
    WATCHED.lock().expect("watched").retain(|(root, id), fd| {
        root != runc_root || keep(id) || {
            reap(fd);
            // Still there (a process, or a zombie that is not ours)?
            alive(fd)
        }
    });
}

/// Whether the process behind `pidfd` is still there (running, or a
/// zombie not reaped yet).
fn alive(pidfd: &OwnedFd) -> bool {
    // SAFETY: signal 0 through a pidfd we own only checks.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    rc == 0
}

/// The wait status of a process that has died, through a pidfd opened
/// while it lived (None on kernels before 6.15). The kernel has it once
/// the process is reaped (by its parent, not us: a container's is the
/// init or subreaper it was left to), which may take a moment.
pub async fn wait_status(pidfd: &OwnedFd) -> Option<i32> {
    // linux/pidfd.h: struct pidfd_info up to exit_code (PIDFD_INFO_SIZE_VER0).
    #[repr(C)]
    #[derive(Default)]
    struct PidfdInfo {
        mask: u64,
        cgroupid: u64,
        ids: [u32; 11],
        exit_code: i32,
    }
    const PIDFD_GET_INFO: libc::c_ulong = 0xC040_FF0B; // _IOWR(0xFF, 11, 64 bytes)
    const PIDFD_INFO_EXIT: u64 = 1 << 3;
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    loop {
        let mut info = PidfdInfo {
            mask: PIDFD_INFO_EXIT,
            ..Default::default()
        };
        // SAFETY: PIDFD_GET_INFO fills a pidfd_info of the size the request
        // number encodes (64 bytes, this struct).
        let rc = unsafe { libc::ioctl(pidfd.as_raw_fd(), PIDFD_GET_INFO as _, &mut info) };
        if rc == 0 && info.mask & PIDFD_INFO_EXIT != 0 {
            return Some(info.exit_code);
        }
        let unsupported = rc != 0
            && matches!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::ENOTTY | libc::EINVAL | libc::EOPNOTSUPP)
            );
        if unsupported || std::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exit_codes_of_processes_that_are_not_our_children() {
        // A child that is reaped by us stands for one reaped by init.
        for (script, want) in [("exit 0", 0), ("exit 3", 3), ("kill -9 $$", 137)] {
            let root = PathBuf::from(format!("/test-root-{want}"));
            let mut child = std::process::Command::new("sh")
                .args(["-c", &format!("read x; {script}")])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            watch(&root, "c", child.id() as i32);
            drop(child.stdin.take());
            child.wait().unwrap();
            let got = exit_code(&root, "c").await;
            // Kernels before 6.15 do not tell.
            assert!(got.is_none() || got == Some(want), "{script}: {got:?}");
            assert_eq!(exit_code(&root, "c").await, None, "watched no more");
        }
    }

    #[tokio::test]
    async fn children_are_reaped_with_their_exit_codes() {
        for (script, want) in [("exit 0", 0), ("exit 3", 3), ("kill -9 $$", 137)] {
            let root = PathBuf::from(format!("/test-reaped-{want}"));
            // Reaped by `exit_code`, not by `wait`.
            #[allow(clippy::zombie_processes)]
            let child = std::process::Command::new("sh")
                .args(["-c", script])
                .spawn()
                .unwrap();
            let pid = child.id() as i32;
            watch(&root, "c", pid);
            // Dead: a zombie, until reaped.
            while std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| !s.contains(") Z "))
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(exit_code(&root, "c").await, Some(want), "{script}");
            assert!(
                !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "reaped"
            );
        }
    }
}
