//! Named network namespaces, compatible with `ip netns`.
//!
//! A named netns is an nsfs file bind-mounted at `/run/netns/<name>`; the
//! mount is what keeps the namespace alive after the creating thread leaves
//! it. This file is the only place in netlab that calls `unshare`/`setns`,
//! for network namespaces and for the one mount namespace netlab makes,
//! [`MountNs`], from which containers start.
//!
//! Namespace membership is per *thread* in Linux. Three ways of using that:
//! * [`NetNs::run`] starts a fresh OS thread, moves it into the namespace and
//!   runs a closure there; the thread dies afterwards, so it never has to
//!   come back.
//! * `hop` (crate-private) moves the *current* thread in, runs a short
//!   synchronous closure (create a socket, open a sysctl file) and moves it
//!   back before returning. Sockets remember the namespace they were created
//!   in, so the returned fd keeps working from anywhere. This is what lets
//!   one tokio worker open a netlink socket per namespace without a thread
//!   per namespace.
//! * `NetNsFactory` (crate-private) is one OS thread that creates a batch of
//!   namespaces back to back (`unshare` + bind mount, then back home).

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use super::error::{nix_to_io, NetError};

/// Where named network namespaces live (same place as iproute2).
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Every namespace netlab creates, configures or deletes starts with this.
/// Destructive operations refuse anything else, so a bad prefix can never
/// reach a namespace that belongs to somebody else.
pub const NETNS_PREFIX: &str = "netlab-";

/// `ioctl(NS_GET_NSTYPE)` from <linux/nsfs.h>: `_IO(0xb7, 0x3)`.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// A named network namespace we hold open.
///
/// Holding the fd keeps the namespace usable even if somebody unmounts it
/// meanwhile; dropping it only closes the fd (use [`NetNs::delete`] to
/// remove the namespace).
#[derive(Debug)]
pub struct NetNs {
    name: String,
    path: PathBuf,
    file: File,
}

impl NetNs {
    /// Create a new network namespace bind-mounted at `/run/netns/<name>`
    /// (visible to `ip netns`). Fails with `EEXIST` if the name is taken.
    pub fn create(name: &str) -> Result<NetNs, NetError> {
        NetNs::create_with(name, || Ok(())).map(|(ns, ())| ns)
    }

    /// [`NetNs::create`], also running `inside` on this thread while it is
    /// still in the new namespace (e.g. to open the namespace's netlink
    /// socket without hopping in a second time).
    pub(crate) fn create_with<T>(
        name: &str,
        inside: impl FnOnce() -> io::Result<T>,
    ) -> Result<(NetNs, T), NetError> {
        check_ours("create netns", name)?;
        ensure_run_dir()?;
        let path = ns_path(name);
        let what = || format!("netns {name}");

        // O_EXCL makes "does it exist?" and "make the mount point" one atomic
        // step, so two concurrent creators cannot both win.
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&path)
            .map_err(|e| NetError::os("creating", what(), e))?;

        let made = in_new_netns(|| {
            // /proc/self is the thread-group leader, which is NOT in the new
            // namespace; only thread-self points at this thread's netns.
            mount(
                Some("/proc/thread-self/ns/net"),
                &path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(nix_to_io)?;
            let file = File::open(&path)?;
            Ok((file, inside()?))
        });
        match made {
            Ok((file, t)) => Ok((
                NetNs {
                    name: name.to_string(),
                    path,
                    file,
                },
                t,
            )),
            Err(e) => {
                let _ = umount2(&path, MntFlags::MNT_DETACH);
                let _ = fs::remove_file(&path);
                Err(NetError::os("creating", what(), e))
            }
        }
    }

    /// Open an existing named network namespace.
    /// The host's network namespace: the one netlab itself runs in (it
    /// never enters another but for a moment, on threads of its own).
    /// Only host access (`public::apply`) uses it, for its one veth and
    /// address.
    pub fn root() -> Result<NetNs, NetError> {
        let path = PathBuf::from("/proc/self/ns/net");
        let file = File::open(&path)
            .map_err(|e| NetError::os("opening", "the host's network namespace", e))?;
        Ok(NetNs {
            name: "host".into(),
            path,
            file,
        })
    }

    pub fn open(name: &str) -> Result<NetNs, NetError> {
        check_name("open netns", name)?;
        let path = ns_path(name);
        let what = || format!("netns {name}");
        let file = File::open(&path).map_err(|e| NetError::os("opening", what(), e))?;
        // A leftover plain file (e.g. after a crash between create and mount)
        // must not be mistaken for a namespace.
        let nstype = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
        if nstype != libc::CLONE_NEWNET {
            return Err(NetError::os(
                "opening",
                what(),
                io::Error::other(format!(
                    "{} is not a network namespace mount",
                    path.display()
                )),
            ));
        }
        Ok(NetNs {
            name: name.to_string(),
            path,
            file,
        })
    }

    /// Remove a named namespace: lazy unmount, then unlink. Ok if absent.
    ///
    /// The kernel frees the namespace (and every interface in it, which
    /// takes the peer end of each veth with it) once the last reference is
    /// gone, asynchronously. Processes or sockets still inside keep it alive.
    pub fn delete(name: &str) -> Result<(), NetError> {
        check_ours("delete netns", name)?;
        let path = ns_path(name);
        let what = || format!("netns {name}");
        match umount2(&path, MntFlags::MNT_DETACH) {
            // EINVAL: not a mount point (half-created); ENOENT: already gone.
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(NetError::os("unmounting", what(), nix_to_io(e))),
        }
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(NetError::os("removing", what(), e)),
        }
    }

    /// Whether a named namespace exists (its file in `/run/netns`).
    pub fn exists(name: &str) -> bool {
        std::path::Path::new(NETNS_RUN_DIR).join(name).exists()
    }

    /// Names in `/run/netns` starting with `prefix`, sorted.
    pub fn list(prefix: &str) -> Vec<String> {
        let Ok(dir) = fs::read_dir(NETNS_RUN_DIR) else {
            return Vec::new();
        };
        let mut names: Vec<String> = dir
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(prefix))
            .collect();
        names.sort();
        names
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The namespace's identity (device and inode of its nsfs file): two
    /// namespaces made one after the other under the same name differ.
    pub fn id(&self) -> io::Result<(u64, u64)> {
        let m = self.file.metadata()?;
        Ok((m.dev(), m.ino()))
    }

    /// Run `f` on a fresh OS thread that has joined this namespace. Sockets
    /// created by `f` (netlink, UDP, TCP) belong to this namespace for their
    /// whole life, whichever thread uses them later. A panic in `f` is
    /// propagated to the caller.
    pub fn run<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> Result<T, NetError> {
        std::thread::scope(|s| {
            let worker = std::thread::Builder::new()
                .name("netns-run".into())
                .spawn_scoped(s, || {
                    setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET)
                        .map_err(|e| NetError::os("entering", self.what(), nix_to_io(e)))?;
                    Ok(f())
                })
                .map_err(|e| NetError::os("starting a thread for", self.what(), e))?;
            match worker.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// A TCP socket listening on `addr` inside this namespace (non-blocking,
    /// for tokio): the lab's API for pods listens so, in the lab's dc
    /// namespace, from a process that lives in the host's. Refuses the
    /// host's own namespace: netlab never listens on a host address but
    /// the loopback.
    pub fn listen_tcp(
        &self,
        addr: std::net::SocketAddr,
    ) -> Result<std::net::TcpListener, NetError> {
        self.check_not_host()?;
        self.run(|| -> io::Result<std::net::TcpListener> {
            let l = std::net::TcpListener::bind(addr)?;
            l.set_nonblocking(true)?;
            Ok(l)
        })?
        .map_err(|e| NetError::os("listening in", format!("{addr} of {}", self.what()), e))
    }

    /// A TCP connection to `addr` made from inside this namespace
    /// (non-blocking, for tokio): `kubectl port-forward` reaches a pod's
    /// port on the pod's own loopback, as the kubelet does. Refuses the
    /// host's own namespace.
    pub fn connect_tcp(
        &self,
        addr: std::net::SocketAddr,
        timeout: std::time::Duration,
    ) -> Result<std::net::TcpStream, NetError> {
        self.check_not_host()?;
        self.run(|| -> io::Result<std::net::TcpStream> {
            let s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
            s.set_nonblocking(true)?;
            Ok(s)
        })?
        .map_err(|e| NetError::os("connecting in", format!("{addr} of {}", self.what()), e))
    }

    /// A `Command` whose child joins this namespace right before `exec`.
    ///
    /// The command owns its own duplicate of the namespace fd, so it stays
    /// valid even if this `NetNs` is dropped before the command is spawned.
    /// Only the network namespace changes (unlike `ip netns exec`, /sys and
    /// /etc/netns are not remounted).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        let fd: io::Result<OwnedFd> = self.file.as_fd().try_clone_to_owned();
        let fd = fd.map_err(|e| e.raw_os_error().unwrap_or(libc::EMFILE));
        // SAFETY: the closure runs between fork and exec; it only issues the
        // setns syscall and builds an io::Error from an errno (no allocation).
        unsafe {
            cmd.pre_exec(move || match &fd {
                Ok(fd) => {
                    if libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::last_os_error())
                    }
                }
                Err(errno) => Err(io::Error::from_raw_os_error(*errno)),
            });
        }
        cmd
    }

    /// Tokio flavour of [`NetNs::command`].
    pub fn tokio_command(&self, program: impl AsRef<OsStr>) -> tokio::process::Command {
        tokio::process::Command::from(self.command(program))
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    pub(crate) fn what(&self) -> String {
        format!("netns {}", self.name)
    }

    /// Run a short, synchronous `f` with the *current* thread inside this
    /// namespace, then move the thread back before returning.
    ///
    /// `f` must not block or yield: while it runs, this thread (possibly a
    /// tokio worker) is in the wrong namespace.
    pub(crate) fn hop<T>(&self, f: impl FnOnce() -> io::Result<T>) -> Result<T, NetError> {
        self.check_not_host()?;
        let home = File::open("/proc/thread-self/ns/net")
            .map_err(|e| NetError::os("opening own netns before entering", self.what(), e))?;
        setns(self.fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| NetError::os("entering", self.what(), nix_to_io(e)))?;
        let _back = GoHome(home);
        f().map_err(|e| NetError::os("working inside", self.what(), e))
    }

    /// Refuse to configure the namespace this process (or init) lives in.
    /// Configuration only ever goes through `hop`, so this one check keeps
    /// the host's own network untouched even if a plan names the wrong file.
    pub(crate) fn check_not_host(&self) -> Result<(), NetError> {
        let meta = self
            .file
            .metadata()
            .map_err(|e| NetError::os("inspecting", self.what(), e))?;
        let me = (meta.dev(), meta.ino());
        if host_netns_ids().contains(&me) {
            return Err(NetError::refused(
                "configure",
                self.what(),
                "it is the host's own network namespace",
            ));
        }
        Ok(())
    }
}

type Job<T> = (
    String,
    tokio::sync::oneshot::Sender<Result<(NetNs, T), NetError>>,
);

/// One dedicated OS thread creating namespaces one after another.
///
/// Creating a namespace costs the kernel about half a millisecond
/// (unshare + mount). Doing that here keeps it off the tokio workers, needs
/// no thread per namespace, and overlaps with the netlink work of the pods
/// created before. `inside` runs in each new namespace before the thread
/// leaves it (used to open the namespace's netlink socket for free).
///
/// The thread keeps its own list of what it created: a namespace can be
/// made and handed over just as the requester is cancelled (another pod
/// failed), and must still be rolled back. [`NetNsFactory::finish`] returns
/// that list once the thread is done.
pub(crate) struct NetNsFactory<T: Send + 'static> {
    tx: Option<std::sync::mpsc::Sender<Job<T>>>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl<T: Send + 'static> NetNsFactory<T> {
    pub(crate) fn start(inside: fn() -> io::Result<T>) -> Result<Self, NetError> {
        let (tx, rx) = std::sync::mpsc::channel::<Job<T>>();
        let thread = std::thread::Builder::new()
            .name("netlab-netns".into())
            .spawn(move || {
                let mut made = Vec::new();
                // Ends when the factory (the only sender) is dropped.
                for (name, reply) in rx {
                    if reply.is_closed() {
                        continue; // the requester gave up (e.g. another pod failed)
                    }
                    let res = NetNs::create_with(&name, inside);
                    if res.is_ok() {
                        made.push(name);
                    }
                    let _ = reply.send(res);
                }
                made
            })
            .map_err(|e| NetError::os("starting", "netns creation thread", e))?;
        Ok(NetNsFactory {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    pub(crate) async fn create(&self, name: &str) -> Result<(NetNs, T), NetError> {
        let gone = || {
            NetError::os(
                "creating",
                format!("netns {name}"),
                io::Error::other("netns creation thread is gone"),
            )
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let tx = self.tx.as_ref().ok_or_else(gone)?;
        tx.send((name.to_string(), reply)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Stop the thread and return the names of every namespace it created.
    /// Call it after all requesters are done or dropped: queued requests
    /// nobody waits for are skipped, so this waits for one creation at most.
    pub(crate) fn finish(mut self) -> Vec<String> {
        self.stop()
    }

    fn stop(&mut self) -> Vec<String> {
        drop(self.tx.take());
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(made)) => made,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => Vec::new(),
        }
    }
}

impl<T: Send + 'static> Drop for NetNsFactory<T> {
    fn drop(&mut self) {
        // Only reached without finish() if the caller's future was dropped;
        // still wait, so no namespace appears after we are gone.
        if !std::thread::panicking() {
            self.stop();
        }
    }
}

/// Puts the thread back into its original namespace, also when unwinding.
struct GoHome(File);

impl Drop for GoHome {
    fn drop(&mut self) {
        if let Err(e) = setns(self.0.as_fd(), CloneFlags::CLONE_NEWNET) {
            // A thread stuck in a foreign namespace would silently create the
            // next sockets (other pods', maybe the host's) in the wrong place.
            // That is worse than dying.
            eprintln!("netlab: cannot return thread to its network namespace: {e}; aborting");
            std::process::abort();
        }
    }
}

/// Run `f` in a brand-new network namespace on the current thread, then
/// return the thread to where it was. The new namespace dies unless `f`
/// pins it (by bind-mounting it).
fn in_new_netns<T>(f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let home = File::open("/proc/thread-self/ns/net")?;
    unshare(CloneFlags::CLONE_NEWNET).map_err(nix_to_io)?;
    let _back = GoHome(home);
    f()
}

/// (dev, inode) of the network namespaces we must never configure: the one
/// this process started in and init's.
fn host_netns_ids() -> &'static Vec<(u64, u64)> {
    static IDS: OnceLock<Vec<(u64, u64)>> = OnceLock::new();
    IDS.get_or_init(|| {
        ["/proc/self/ns/net", "/proc/1/ns/net"]
            .iter()
            .filter_map(|p| fs::metadata(p).ok())
            .map(|m| (m.dev(), m.ino()))
            .collect()
    })
}

/// Make `/run/netns` exist and be a shared mount, exactly like iproute2
/// does, so namespace mounts propagate to (and from) other mount namespaces
/// and `ip netns` interoperates with us.
fn ensure_run_dir() -> Result<(), NetError> {
    static READY: Mutex<bool> = Mutex::new(false);
    let mut ready = READY.lock().unwrap_or_else(|p| p.into_inner());
    if *ready {
        return Ok(());
    }
    let what = || NETNS_RUN_DIR.to_string();
    fs::create_dir_all(NETNS_RUN_DIR).map_err(|e| NetError::os("creating directory", what(), e))?;
    let make_shared = || {
        mount(
            Some("none"),
            NETNS_RUN_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match make_shared() {
        Ok(()) => {}
        // EINVAL: not a mount point yet. Bind it onto itself, then retry.
        Err(Errno::EINVAL) => {
            mount(
                Some(NETNS_RUN_DIR),
                NETNS_RUN_DIR,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| NetError::os("bind-mounting", what(), nix_to_io(e)))?;
            make_shared().map_err(|e| NetError::os("making shared mount", what(), nix_to_io(e)))?;
        }
        Err(e) => return Err(NetError::os("making shared mount", what(), nix_to_io(e))),
    }
    *ready = true;
    Ok(())
}

fn ns_path(name: &str) -> PathBuf {
    Path::new(NETNS_RUN_DIR).join(name)
}

/// A usable file name inside /run/netns.
pub(crate) fn check_name(op: &'static str, name: &str) -> Result<(), NetError> {
    if let Some(reason) = invalid_netns_name(name) {
        return Err(NetError::refused(op, format!("{name:?}"), reason));
    }
    Ok(())
}

/// A usable name that also belongs to netlab.
pub(crate) fn check_ours(op: &'static str, name: &str) -> Result<(), NetError> {
    check_name(op, name)?;
    if !name.starts_with(NETNS_PREFIX) {
        return Err(NetError::refused(
            op,
            format!("netns {name}"),
            format!("netlab only manages namespaces named {NETNS_PREFIX}*"),
        ));
    }
    Ok(())
}

pub(crate) fn invalid_netns_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty name")
    } else if name == "." || name == ".." {
        Some("not a file name")
    } else if name.contains('/') || name.contains('\0') {
        Some("name contains '/' or NUL")
    } else if name.len() > 255 {
        Some("name longer than 255 bytes")
    } else {
        None
    }
}

/// A mount namespace that containers start from: a private copy of the
/// host's mounts as they were when it was made, without the mounts that
/// labs add per pod (every pod's `/run/netns` file, every container's
/// rootfs). Each container starts in a fresh copy of it holding only its
/// own rootfs and namespace files ([`MountNs::spawn_in_copy`]), so what
/// runc copies, walks and parses per container (the mount table, several
/// times) stays the same size however many pods the lab has: in the
/// host's namespace it grows by two mounts a pod, and at 1 000 pods a
/// container took twice as long to start.
///
/// Nothing is mounted in the namespace itself after it is made, and it
/// lives as long as this value (the fd): no process, no file to clean up.
#[derive(Debug)]
pub struct MountNs {
    fd: OwnedFd,
}

/// `open_tree(2)` and `move_mount(2)` flags (<linux/mount.h>).
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

impl MountNs {
    /// A private copy of this process's mount namespace without any mount
    /// strictly below one of `drop_below` but those at `keep` (mounts of
    /// the `drop_below` directories themselves stay: their files are the
    /// targets of what is carried in).
    pub fn private_copy(drop_below: &[PathBuf], keep: &[PathBuf]) -> io::Result<MountNs> {
        std::thread::scope(|s| {
            // Mount namespaces are per thread too: this one is made by a
            // thread that ends right after, leaving only the fd.
            s.spawn(|| {
                unshare(CloneFlags::CLONE_NEWNS).map_err(nix_to_io)?;
                mount(
                    None::<&str>,
                    "/",
                    None::<&str>,
                    MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                    None::<&str>,
                )
                .map_err(|e| io::Error::other(format!("making the mounts private: {e}")))?;
                let info = fs::read_to_string("/proc/thread-self/mountinfo")?;
                for point in mounts_strictly_below(&info, drop_below, keep) {
                    match umount2(&point, MntFlags::MNT_DETACH) {
                        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
                        Err(e) => {
                            return Err(io::Error::other(format!(
                                "leaving {} out: {e}",
                                point.display()
                            )))
                        }
                    }
                }
                let fd = File::open("/proc/thread-self/ns/mnt")?;
                Ok(MountNs { fd: fd.into() })
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the thread making it panicked")))
        })
    }

    /// Spawns `cmd` in a fresh copy of this namespace into which the
    /// mounts at `carry` (paths as this process sees them: a rootfs, a
    /// `/run/netns` file) are cloned, each at the same path. The copy goes
    /// away with the last process in it.
    ///
    /// The copy is made by a short-lived thread of this process, which the
    /// child inherits it from: a `pre_exec` hook would make the spawn a
    /// full fork of this (large) process, about a millisecond of page
    /// tables per container, where a plain spawn is a vfork.
    pub fn spawn_in_copy(
        &self,
        cmd: &mut tokio::process::Command,
        carry: &[PathBuf],
    ) -> io::Result<tokio::process::Child> {
        let mut trees = Vec::with_capacity(carry.len());
        for path in carry {
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
                .map_err(|_| io::Error::other(format!("{}: a NUL in the path", path.display())))?;
            // SAFETY: plain syscall; the flags ask for a detached copy of
            // the mount at `c`, returned as a new fd we own.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_open_tree,
                    libc::AT_FDCWD,
                    c.as_ptr(),
                    OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
                )
            };
            if fd < 0 {
                let e = io::Error::last_os_error();
                return Err(io::Error::new(
                    e.kind(),
                    format!("cloning the mount at {}: {e}", path.display()),
                ));
            }
            // SAFETY: a fresh fd nothing else owns.
            trees.push((unsafe { OwnedFd::from_raw_fd(fd as i32) }, c, path));
        }
        let runtime = tokio::runtime::Handle::current();
        std::thread::scope(|s| {
            s.spawn(|| {
                // A thread shares its root and working directory with the
                // others until it unshares them; only then may it change
                // mount namespace.
                unshare(CloneFlags::CLONE_FS).map_err(nix_to_io)?;
                setns(&self.fd, CloneFlags::CLONE_NEWNS).map_err(nix_to_io)?;
                unshare(CloneFlags::CLONE_NEWNS).map_err(nix_to_io)?;
                for (tree, target, path) in &trees {
                    // SAFETY: plain syscall on an fd and a string we own.
                    let r = unsafe {
                        libc::syscall(
                            libc::SYS_move_mount,
                            tree.as_raw_fd(),
                            c"".as_ptr(),
                            libc::AT_FDCWD,
                            target.as_ptr(),
                            MOVE_MOUNT_F_EMPTY_PATH,
                        )
                    };
                    if r != 0 {
                        let e = io::Error::last_os_error();
                        return Err(io::Error::new(
                            e.kind(),
                            format!("carrying the mount at {} in: {e}", path.display()),
                        ));
                    }
                }
                let _runtime = runtime.enter();
                cmd.spawn()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the thread starting it panicked")))
        })
    }
}

/// The mount points in `mountinfo` strictly below one of `dirs`, but not
/// at `keep`, deepest first (so that a mount inside another goes before it).
fn mounts_strictly_below(mountinfo: &str, dirs: &[PathBuf], keep: &[PathBuf]) -> Vec<PathBuf> {
    mount_points(mountinfo, |p| {
        dirs.iter().any(|d| p.starts_with(d) && p != d) && !keep.iter().any(|k| k == p)
    })
}

/// The mount points in `mountinfo` (as `/proc/*/mountinfo` lists them)
/// that `wanted`, deepest first (so that a mount inside another goes
/// before it), each once.
pub fn mount_points(mountinfo: &str, wanted: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| wanted(p))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let code: String = chars.by_ref().take(3).collect();
            match u8::from_str_radix(&code, 8) {
                Ok(v) => out.push(v as char),
                Err(_) => {
                    out.push('\\');
                    out.push_str(&code);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn unescape_mountinfo() {
        assert_eq!(super::unescape_mountinfo("/a\\040b"), "/a b");
    }

    #[test]
    fn only_mounts_strictly_below_are_left_out() {
        let info = "\
22 1 0:21 / / rw - ext4 /dev/vda rw
30 22 0:25 / /run rw - tmpfs tmpfs rw
31 30 0:25 /netns /run/netns rw shared:5 - tmpfs tmpfs rw
40 31 0:4 net:[4026532] /run/netns/netlab-a-pod rw - nsfs nsfs rw
39 30 0:39 / /run/netlab/a rw - tmpfs netlab rw
41 30 0:40 / /run/netlab/a/pods/x/c/rootfs rw - overlay overlay rw
42 30 0:41 / /run/netlab/a/pods/x/c/rootfs/mnt rw - tmpfs tmpfs rw
43 22 0:42 / /var/lib/other rw - tmpfs tmpfs rw
44 30 0:43 / /run/netlab/b rw - tmpfs netlab rw
";
        let dirs = [
            std::path::PathBuf::from("/run/netns"),
            std::path::PathBuf::from("/run/netlab"),
        ];
        let keep = [std::path::PathBuf::from("/run/netlab/a")];
        let found: Vec<String> = super::mounts_strictly_below(info, &dirs, &keep)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(
            found,
            [
                "/run/netlab/a/pods/x/c/rootfs/mnt",
                "/run/netlab/a/pods/x/c/rootfs",
                "/run/netns/netlab-a-pod",
                "/run/netlab/b",
            ]
        );
    }
    use super::*;

    #[test]
    fn names() {
        assert!(invalid_netns_name("netlab-a.pod.default.x").is_none());
        assert!(invalid_netns_name("").is_some());
        assert!(invalid_netns_name("..").is_some());
        assert!(invalid_netns_name("a/b").is_some());
        assert!(invalid_netns_name(&"x".repeat(256)).is_some());
        assert!(check_ours("delete netns", "netlab-x.dc").is_ok());
        assert!(matches!(
            check_ours("delete netns", "docker-x"),
            Err(NetError::Refused { .. })
        ));
        assert!(check_ours("delete netns", "netlab-../x").is_err());
    }

    #[test]
    fn delete_refuses_foreign_names_without_touching_anything() {
        let e = NetNs::delete("cni-1234").unwrap_err();
        assert!(e.to_string().contains("refusing to delete netns"), "{e}");
    }
}
