//! End to end, as root: containers' writable layers live on the lab's own
//! capped disk (issue 15, item 6). A container that writes past the cap
//! gets ENOSPC and the host is unharmed; a cap larger than the free space
//! is refused at `up` with the file and line; `down` leaves no mount, file
//! or loop device.

mod common;

use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

fn lab_yaml(disk: &str) -> String {
    format!(
        "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  diskSize: {disk}\n  dns: {{enabled: false}}\n---\n{}",
        nginx_deployment("web", 2)
    )
}

/// Bytes a file really takes on disk (a sparse file: what was written).
fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}

/// Bytes under `dir` on `dir`'s own filesystem (mounts below it not counted).
fn du_same_fs(dir: &Path) -> u64 {
    let dev = std::fs::metadata(dir).unwrap().dev();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.dev() != dev {
                continue;
            }
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.blocks() * 512;
            }
        }
    }
    total
}

#[test]
fn a_container_that_fills_its_disk_gets_enospc_and_the_host_is_unharmed() {
    let lab = Lab::up("disk-full", &lab_yaml("64Mi"));
    let pods = lab.pods();
    assert_eq!(pods.len(), 2, "{pods:?}");
    let (writer, other) = (&pods[0], &pods[1]);
    let image = Path::new("/var/lib/netlab/labs")
        .join(&lab.name)
        .join("disk.img");
    assert_eq!(
        std::fs::metadata(&image).unwrap().len(),
        64 << 20,
        "the disk has the size the Lab asked for"
    );
    let run_dir = Path::new("/run/netlab").join(&lab.name);
    let run_before = du_same_fs(&run_dir);

    // 100 MB into a 64 MiB disk.
    let out = lab.run(&[
        "exec",
        &writer.0,
        "--",
        "sh",
        "-c",
        "dd if=/dev/zero of=/fill bs=1M count=100",
    ]);
    let err = stderr(&out) + &stdout(&out);
    assert!(!out.status.success(), "dd past the cap must fail: {err}");
    assert!(err.contains("No space left on device"), "{err}");

    // The host: the image holds at most the cap, nothing landed in /run.
    assert!(
        allocated(&image) <= (64 << 20) + (1 << 20),
        "the disk image grew past its cap: {} bytes",
        allocated(&image)
    );
    let run_after = du_same_fs(&run_dir);
    assert!(
        run_after < run_before + (1 << 20),
        "writes landed in /run/netlab/{}: {run_before} -> {run_after} bytes",
        lab.name
    );

    // The other pod still serves and writes (its share is what is left, so
    // free some first), and the full one works again once it deletes.
    lab.ok(&["exec", &writer.0, "--", "rm", "/fill"]);
    let body = must_curl(&lab, "node/node-1", &format!("http://{}/", other.1));
    assert!(body.contains("Welcome to nginx"), "{body}");
    lab.ok(&[
        "exec",
        &other.0,
        "--",
        "sh",
        "-c",
        "echo hello > /note && cat /note",
    ]);
    let body = must_curl(&lab, "node/node-2", &format!("http://{}/", writer.1));
    assert!(body.contains("Welcome to nginx"), "{body}");

    let disk_dir = image.parent().unwrap().to_path_buf();
    lab.down_clean();
    assert!(!disk_dir.exists(), "{} left behind", disk_dir.display());
}

#[test]
fn a_disk_larger_than_the_free_space_is_refused_and_nothing_is_created() {
    let lab = Lab::prepare("disk-huge", &lab_yaml("1Ei"));
    let out = netlab(&["up", "--name", &lab.name, lab.file().to_str().unwrap()]);
    assert!(!out.status.success(), "up must refuse it");
    let err = stderr(&out);
    let at = format!("{}:1: Lab: spec.diskSize", lab.file().display());
    assert!(
        err.contains(&at) && err.contains("is more than the") && err.contains("free under"),
        "{err}"
    );
    let traces = Traces::of(&lab.name, &[]);
    assert!(traces.is_clean(), "{traces:#?}");
    wait_for("no lab", Duration::from_secs(1), || {
        !Path::new("/var/lib/netlab/labs").join(&lab.name).exists()
    });
}
