//! Images end to end (root): pulls from real registries (the local one
//! setup runs, and registries of the tests' own on other loopback ports,
//! with and without auth), digests checked, hostile layers refused,
//! whiteouts applied, imports of OCI layouts and `docker save` archives,
//! and pull failures as `get pods` and `describe pod` show them.
//! Each test uses its own image store (NETLAB_DATA_DIR) unless it needs
//! the shared one, so they run in parallel.

mod common;

use common::*;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn store_dir() -> tempfile::TempDir {
    // Not /tmp: overlayfs and trusted.* xattrs need a real filesystem.
    std::fs::create_dir_all("/var/tmp").unwrap();
    tempfile::tempdir_in("/var/tmp").unwrap()
}

/// An empty registries config: no mirror but what the test gives.
fn no_registries_config(dir: &Path) -> String {
    let p = dir.join("registries.yaml");
    std::fs::write(&p, "").unwrap();
    p.display().to_string()
}

fn ok(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\nstdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

fn failed(out: &std::process::Output, what: &str) -> String {
    assert!(!out.status.success(), "{what} succeeded:\n{}", stdout(out));
    stderr(out)
}

// ------------------------------------------------------------ tar builders

enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    FileOwned(&'a str, &'a [u8], u64, u64, u32),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    CharDev(&'a str),
}

fn tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        h.set_mode(0o755);
        let (name, data): (&str, &[u8]) = match e {
            E::Dir(n) => {
                h.set_entry_type(tar::EntryType::Directory);
                (n, b"")
            }
            E::File(n, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(d.len() as u64);
                (n, d)
            }
            E::FileOwned(n, d, uid, gid, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_uid(*uid);
                h.set_gid(*gid);
                h.set_mode(*mode);
                h.set_size(d.len() as u64);
                (n, d)
            }
            E::Symlink(n, t) | E::Hardlink(n, t) => {
                h.set_entry_type(if matches!(e, E::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                let t = t.as_bytes();
                h.as_old_mut().linkname[..t.len()].copy_from_slice(t);
                (n, b"")
            }
            E::CharDev(n) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_device_major(1).unwrap();
                h.set_device_minor(3).unwrap();
                (n, b"")
            }
        };
        // Raw names: set_path refuses `..`, and hostile archives need it.
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// An OCI image layout in `dir` holding one image of these layers
/// (uncompressed tars, stored gzipped), named `name` if given.
fn oci_layout(dir: &Path, layers: &[Vec<u8>], name: Option<&str>) -> (String, Vec<String>) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = sha(bytes);
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), bytes).unwrap();
        d
    };
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    let mut digests = Vec::new();
    for l in layers {
        let gz = gzip(l);
        let d = put(&gz);
        diff_ids.push(sha(l));
        descriptors.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d, "size": gz.len()
        }));
        digests.push(d);
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    })
    .to_string();
    let cd = put(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": descriptors
    })
    .to_string();
    let md = put(manifest.as_bytes());
    let mut entry = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": md, "size": manifest.len()
    });
    if let Some(n) = name {
        entry["annotations"] = serde_json::json!({"io.containerd.image.name": n});
    }
    std::fs::write(
        dir.join("index.json"),
        serde_json::json!({"schemaVersion": 2, "manifests": [entry]}).to_string(),
    )
    .unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    (md, digests)
}

// ------------------------------------------------------------ pulls

#[test]
fn pull_from_local_registry_then_nothing_transfers() {
    require_root();
    require_local_registry();
    let store = store_dir();
    let data = store.path().to_str().unwrap();
    let cfg = no_registries_config(store.path());
    let env = [
        ("NETLAB_DATA_DIR", data),
        ("NETLAB_REGISTRIES_CONFIG", cfg.as_str()),
    ];
    let mirror = format!("docker.io=http://{LOCAL_REGISTRY}");
    let args = [
        "pull",
        "--registry-mirror",
        &mirror,
        "radial/busyboxplus:curl",
    ];
    let first = ok(&netlab_env(&args, &env), "first pull");
    assert!(first.contains("pulled sha256:"), "{first}");
    assert!(
        first.contains(&format!("from http://{LOCAL_REGISTRY}")),
        "{first}"
    );
    assert!(!first.contains(" 0 B downloaded"), "{first}");
    let second = ok(&netlab_env(&args, &env), "second pull");
    assert!(
        second.contains("up to date") && second.contains(" 0 B downloaded"),
        "{second}"
    );
    let list = ok(&netlab_env(&["images"], &env), "images");
    assert!(
        list.contains("radial/busyboxplus") && list.contains("curl"),
        "{list}"
    );
    // Unpacked once, under the layer's digest.
    assert_eq!(
        std::fs::read_dir(store.path().join("layers"))
            .unwrap()
            .count(),
        1
    );
    // The same image by digest, from the store.
    let digest = second
        .split_whitespace()
        .find(|w| w.starts_with("(sha256:"))
        .unwrap();
    let by_digest = format!(
        "radial/busyboxplus@{}",
        digest.trim_start_matches('(').trim_end_matches(',')
    );
    ok(
        &netlab_env(&["images", "inspect", &by_digest], &env),
        "inspect by digest",
    );
}

#[test]
fn pull_with_and_without_basic_auth() {
    let registry = TestRegistry::start(Some(("alice", "s3cret")));
    let store = store_dir();
    let cfg = store.path().join("with-auth.yaml");
    std::fs::write(
        &cfg,
        format!(
            "configs:\n  \"{}\":\n    auth:\n      username: alice\n      password: s3cret\n",
            registry.addr
        ),
    )
    .unwrap();
    let image = format!("{}/netlabtest/bb:1", registry.addr);
    let cfg = cfg.display().to_string();
    ok(
        &netlab_env(
            &["push", "--quiet", "radial/busyboxplus:curl", &image],
            &[("NETLAB_REGISTRIES_CONFIG", &cfg)],
        ),
        "push with credentials",
    );
    let data = store.path().join("store");
    let data = data.to_str().unwrap();
    let empty = no_registries_config(store.path());
    let err = failed(
        &netlab_env(
            &["pull", &image],
            &[
                ("NETLAB_DATA_DIR", data),
                ("NETLAB_REGISTRIES_CONFIG", &empty),
            ],
        ),
        "pull without credentials",
    );
    assert!(
        err.contains(&image) || err.contains(&registry.addr),
        "{err}"
    );
    assert!(
        err.to_lowercase().contains("auth"),
        "no word of auth: {err}"
    );
    let out = ok(
        &netlab_env(
            &["pull", &image],
            &[
                ("NETLAB_DATA_DIR", data),
                ("NETLAB_REGISTRIES_CONFIG", &cfg),
            ],
        ),
        "pull with credentials",
    );
    assert!(out.contains("pulled"), "{out}");
}

#[test]
fn digest_mismatch_is_rejected() {
    require_root();
    let registry = TestRegistry::start(None);
    let image = format!("{}/netlabtest/tampered:1", registry.addr);
    ok(
        &netlab(&["push", "--quiet", "radial/busyboxplus:curl", &image]),
        "push",
    );
    let shared = netlab::runtime::Store::new(Path::new("/var/lib/netlab"));
    let layer = shared.resolve("radial/busyboxplus:curl").unwrap().layers[0]
        .digest()
        .to_string();
    // Change one byte of the layer as the registry stores it.
    let blob = registry.blob_file(&layer);
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let store = store_dir();
    let data = store.path().to_str().unwrap();
    let cfg = no_registries_config(store.path());
    let env = [
        ("NETLAB_DATA_DIR", data),
        ("NETLAB_REGISTRIES_CONFIG", cfg.as_str()),
    ];
    let err = failed(
        &netlab_env(&["pull", &image], &env),
        "pull of a tampered layer",
    );
    assert!(err.to_lowercase().contains("digest"), "{err}");
    failed(&netlab_env(&["images", "inspect", &image], &env), "inspect");
    // Nothing half-downloaded keeps the layer's name.
    let blob_in_store = store
        .path()
        .join("images/blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    assert!(!blob_in_store.exists());
}

// ------------------------------------------------------------ layers

#[test]
fn hostile_layers_are_refused() {
    require_root();
    let outside = store_dir();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "keep me").unwrap();
    let out = outside.path().display().to_string();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot",
            tar(&[E::File("../../../../../../var/tmp/netlab-evil", b"x")]),
        ),
        (
            "through-symlink",
            tar(&[E::Symlink("link", &out), E::File("link/pwned", b"x")]),
        ),
        (
            "whiteout-through-symlink",
            tar(&[E::Symlink("link", &out), E::File("link/.wh.victim", b"")]),
        ),
        (
            "hardlink-outside",
            tar(&[E::Hardlink("hl", "../../../../../../etc/passwd")]),
        ),
    ];
    for (name, layer) in cases {
        let dir = store_dir();
        oci_layout(dir.path(), &[layer], None);
        let store = store_dir();
        let env = [("NETLAB_DATA_DIR", store.path().to_str().unwrap())];
        let tag = format!("netlabtest/hostile-{name}:1");
        let err = failed(
            &netlab_env(
                &[
                    "images",
                    "import",
                    dir.path().to_str().unwrap(),
                    "--tag",
                    &tag,
                ],
                &env,
            ),
            name,
        );
        assert!(err.contains("layer"), "{name}: {err}");
        failed(&netlab_env(&["images", "inspect", &tag], &env), name);
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    assert!(!outside.path().join("pwned").exists());
    assert!(!Path::new("/var/tmp/netlab-evil").exists());
}

#[test]
fn layers_unpack_with_whiteouts_links_and_owners() {
    require_root();
    let lower = tar(&[
        E::Dir("a/"),
        E::File("a/keep", b"keep"),
        E::File("a/gone", b"gone"),
        E::Dir("b/"),
        E::File("b/old", b"old"),
        E::Hardlink("hl", "a/keep"),
        E::Symlink("s", "a/keep"),
        E::FileOwned("suid", b"#!/bin/sh\n", 1234, 5678, 0o4755),
        E::Dir("dev/"),
        E::CharDev("dev/mem"),
    ]);
    let upper = tar(&[
        E::File("a/.wh.gone", b""),
        E::File("b/.wh..wh..opq", b""),
        E::File("b/new", b"new"),
    ]);
    let dir = store_dir();
    let (_, layers) = oci_layout(dir.path(), &[lower, upper], Some("netlabtest/whiteouts:1"));
    let store = store_dir();
    let env = [("NETLAB_DATA_DIR", store.path().to_str().unwrap())];
    let out = ok(
        &netlab_env(&["images", "import", dir.path().to_str().unwrap()], &env),
        "import",
    );
    assert!(out.contains("docker.io/netlabtest/whiteouts:1"), "{out}");
    let l = |i: usize| {
        store
            .path()
            .join("layers")
            .join(layers[i].replace(':', "-"))
    };
    let (l0, l1) = (l(0), l(1));
    assert_eq!(
        std::fs::metadata(l0.join("hl")).unwrap().ino(),
        std::fs::metadata(l0.join("a/keep")).unwrap().ino(),
        "hard link"
    );
    assert_eq!(
        std::fs::read_link(l0.join("s")).unwrap(),
        Path::new("a/keep")
    );
    let m = std::fs::metadata(l0.join("suid")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1234, 5678, 0o4755));
    assert!(!l0.join("dev/mem").exists(), "device nodes are skipped");
    // The layers stacked as a container sees them.
    let merged = store.path().join("merged");
    std::fs::create_dir(&merged).unwrap();
    let opts = format!("lowerdir={}:{}", l1.display(), l0.display());
    nix::mount::mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(opts.as_str()),
    )
    .expect("overlay mount");
    let seen = |p: &str| merged.join(p).exists();
    let result = (seen("a/keep"), seen("a/gone"), seen("b/old"), seen("b/new"));
    nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH).unwrap();
    assert_eq!(
        result,
        (true, false, false, true),
        "(a/keep, a/gone, b/old, b/new)"
    );
}

// ------------------------------------------------------------ imports

#[test]
fn import_docker_save_archive_and_oci_layout() {
    require_root();
    let work = store_dir();
    let store = work.path().join("store");
    let env = [("NETLAB_DATA_DIR", store.to_str().unwrap())];

    // `docker save`: manifest.json, the config, one uncompressed layer.tar per layer.
    let layer = tar(&[E::Dir("etc/"), E::File("etc/hello", b"from docker save")]);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(&layer)]}
    })
    .to_string();
    let config_name = format!(
        "{}.json",
        sha(config.as_bytes()).trim_start_matches("sha256:")
    );
    let manifest = serde_json::json!([{
        "Config": config_name, "RepoTags": ["netlabtest/saved:1"], "Layers": ["0123/layer.tar"]
    }])
    .to_string();
    let archive_path = work.path().join("saved.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&archive_path).unwrap());
    for (name, data) in [
        ("manifest.json", manifest.as_bytes()),
        (config_name.as_str(), config.as_bytes()),
        ("0123/layer.tar", &layer[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    }
    b.finish().unwrap();
    drop(b);
    let out = ok(
        &netlab_env(&["images", "import", archive_path.to_str().unwrap()], &env),
        "import docker archive",
    );
    assert!(out.contains("docker.io/netlabtest/saved:1"), "{out}");
    ok(
        &netlab_env(&["images", "inspect", "netlabtest/saved:1"], &env),
        "inspect",
    );

    // An OCI layout directory, named by --tag.
    let layout = work.path().join("layout");
    oci_layout(&layout, &[tar(&[E::File("hello", b"oci")])], None);
    ok(
        &netlab_env(
            &[
                "images",
                "import",
                layout.to_str().unwrap(),
                "--tag",
                "localhost:5999/x/y:2",
            ],
            &env,
        ),
        "import layout",
    );
    let list = ok(&netlab_env(&["images"], &env), "images");
    assert!(
        list.contains("netlabtest/saved") && list.contains("localhost:5999/x/y"),
        "{list}"
    );
}

#[test]
fn layer_bombs_are_refused_and_leave_the_store_as_before() {
    require_root();
    let work = store_dir();
    let store = work.path().join("store");
    // 10 MB: the bomb below unpacks to 100 MB.
    let env = [
        ("NETLAB_DATA_DIR", store.to_str().unwrap()),
        ("NETLAB_MAX_LAYER_SIZE", "10000000"),
    ];
    // A small image first: what the store holds before the bomb.
    let good = work.path().join("good");
    oci_layout(&good, &[tar(&[E::File("hello", b"small")])], None);
    ok(
        &netlab_env(
            &[
                "images",
                "import",
                good.to_str().unwrap(),
                "--tag",
                "netlabtest/small:1",
            ],
            &env,
        ),
        "import of a small image under the cap",
    );
    let before = files_under(&store);
    // 100 MB of zeros, gzip-compressed to about 100 KB.
    let zeros = vec![0u8; 100_000_000];
    let bomb = work.path().join("bomb");
    let (_, layers) = oci_layout(&bomb, &[tar(&[E::File("zeros", &zeros)])], None);
    drop(zeros);
    let blob = std::fs::metadata(
        bomb.join("blobs/sha256")
            .join(layers[0].trim_start_matches("sha256:")),
    )
    .unwrap()
    .len();
    assert!(
        blob < 1_000_000,
        "the bomb is small compressed: {blob} bytes"
    );
    let started = std::time::Instant::now();
    let out = netlab_env(
        &[
            "images",
            "import",
            bomb.to_str().unwrap(),
            "--tag",
            "netlabtest/bomb:1",
        ],
        &env,
    );
    let err = failed(&out, "import of a layer bomb");
    assert!(
        err.contains("netlabtest/bomb:1")
            && err.contains(&layers[0])
            && err.contains("decompression bomb"),
        "the error names the image and the layer: {err}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(
        files_under(&store),
        before,
        "no blob, no layer directory, no temporary file left"
    );
}

// ------------------------------------------------------------ mirrors

#[test]
fn mirrors_from_flag_env_and_lab_document() {
    require_root();
    let registry = TestRegistry::start(None);
    ok(
        &netlab(&[
            "push",
            "--quiet",
            "radial/busyboxplus:curl",
            &format!("{}/netlabmirror/bb:1", registry.addr),
        ]),
        "push",
    );
    let work = store_dir();
    let cfg = no_registries_config(work.path());
    let mirror = format!("docker.io=http://{}", registry.addr);
    let from = format!("from http://{}", registry.addr);

    // A flag, with a dead mirror first: the next one serves.
    let s1 = work.path().join("s1");
    let out = ok(
        &netlab_env(
            &[
                "pull",
                "--registry-mirror",
                "docker.io=http://127.0.0.1:1",
                "--registry-mirror",
                &mirror,
                "netlabmirror/bb:1",
            ],
            &[
                ("NETLAB_DATA_DIR", s1.to_str().unwrap()),
                ("NETLAB_REGISTRIES_CONFIG", &cfg),
            ],
        ),
        "pull with --registry-mirror",
    );
    assert!(out.contains(&from), "{out}");
    // The environment variable.
    let s2 = work.path().join("s2");
    let out = ok(
        &netlab_env(
            &["pull", "netlabmirror/bb:1"],
            &[
                ("NETLAB_DATA_DIR", s2.to_str().unwrap()),
                ("NETLAB_REGISTRIES_CONFIG", &cfg),
                ("NETLAB_REGISTRY_MIRRORS", &mirror),
            ],
        ),
        "pull with NETLAB_REGISTRY_MIRRORS",
    );
    assert!(out.contains(&from), "{out}");
    // The Lab document, for `up` and for the controller.
    let s3 = work.path().join("s3");
    let yaml = format!(
        "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  nodes: 1\n  registries:\n    mirrors:\n      docker.io:\n        endpoint: [\"http://{}\"]\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: bb\nspec:\n  containers:\n  - name: bb\n    image: netlabmirror/bb:1\n    command: [sleep, \"3600\"]\n",
        registry.addr
    );
    let lab = Lab::up_env(
        "mirror-doc",
        &yaml,
        &[
            ("NETLAB_DATA_DIR", s3.to_str().unwrap()),
            ("NETLAB_REGISTRIES_CONFIG", &cfg),
        ],
    );
    let described = lab.ok(&["describe", "pod", "bb"]);
    assert!(
        described.contains("Successfully pulled image \"netlabmirror/bb:1\""),
        "{described}"
    );
    assert!(described.contains(&from), "{described}");
    lab.down_clean();
}

// ------------------------------------------------------------ pull failures

fn pod_status(lab: &Lab, pod: &str) -> String {
    lab.ok(&["get", "pods", pod])
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn failed_pulls_show_in_get_and_describe_then_recover() {
    require_root();
    require_local_registry();
    let lab = Lab::up(
        "pull-fail",
        "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  nodes: 1\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: ok\nspec:\n  containers:\n  - name: c\n    image: radial/busyboxplus:curl\n    command: [sleep, \"3600\"]\n",
    );
    let repo = format!("netlabtest/{}", lab.name);
    let image = format!("{repo}:1");
    let pod = |name: &str, image: &str, policy: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: {image}\n    imagePullPolicy: {policy}\n    command: [sleep, \"3600\"]\n"
        )
    };
    let file = lab.dir.path().join("more.yaml");
    std::fs::write(
        &file,
        format!(
            "{}---\n{}",
            pod("late", &image, "IfNotPresent"),
            pod("never", &image, "Never")
        ),
    )
    .unwrap();
    lab.ok(&["apply", "-f", file.to_str().unwrap()]);
    let st = pod_status(&lab, "late");
    assert!(st == "ErrImagePull" || st == "ImagePullBackOff", "{st}");
    assert_eq!(pod_status(&lab, "never"), "ErrImageNeverPull");
    let described = lab.ok(&["describe", "pod", "late"]);
    assert!(
        described.contains(&format!("Failed to pull image \"{image}\""))
            && described.contains("manifest unknown")
            && described.contains("Error: ErrImagePull"),
        "{described}"
    );
    wait_for("ImagePullBackOff", Duration::from_secs(10), || {
        pod_status(&lab, "late") == "ImagePullBackOff"
    });
    // The image appears in the registry: the next try after the back-off pulls it.
    ok(
        &netlab(&[
            "push",
            "--quiet",
            "radial/busyboxplus:curl",
            &format!("{LOCAL_REGISTRY}/{image}"),
        ]),
        "push",
    );
    wait_for(
        "the pod to run after its back-off",
        Duration::from_secs(60),
        || pod_status(&lab, "late") == "Running",
    );
    assert_eq!(pod_status(&lab, "ok"), "Running");
    lab.down_clean();
    // Clean up: the tag in the local registry, and the name in the store.
    ok(&netlab(&["images", "rm", &image]), "images rm");
    let out = std::process::Command::new("curl")
        .args([
            "-fsSI",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
        ])
        .arg(format!("http://{LOCAL_REGISTRY}/v2/{repo}/manifests/1"))
        .output()
        .unwrap();
    if let Some(d) = String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        l.strip_prefix("Docker-Content-Digest: ")
            .or_else(|| l.strip_prefix("docker-content-digest: "))
    }) {
        let _ = std::process::Command::new("curl")
            .args(["-fsS", "-X", "DELETE"])
            .arg(format!(
                "http://{LOCAL_REGISTRY}/v2/{repo}/manifests/{}",
                d.trim()
            ))
            .output();
    }
}

// ------------------------------------------------------------ hostile inputs (issue 15)

/// Runs netlab with a deadline: a hostile input must fail, not hang.
fn netlab_within(args: &[&str], env: &[(&str, &str)], limit: Duration) -> std::process::Output {
    let mut cmd = std::process::Command::new(NETLAB);
    cmd.args(args)
        .env_remove("NETLAB_LAB")
        .env_remove("NETLAB_REGISTRY_MIRRORS")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("running netlab");
    let start = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "netlab {args:?} still ran after {limit:?} (killed):\n{}",
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every file under `dir` (not following symlinks).
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A tar archive of raw members (name, type, link target, data).
fn raw_archive(path: &Path, members: &[(&str, tar::EntryType, &str, &[u8])]) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, kind, link, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        let n = name.as_bytes();
        h.as_old_mut().name[..n.len()].copy_from_slice(n);
        if !link.is_empty() {
            let l = link.as_bytes();
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l);
        }
        if matches!(kind, tar::EntryType::Char) {
            h.set_device_major(1).unwrap();
            h.set_device_minor(5).unwrap();
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.finish().unwrap();
}

#[test]
fn hostile_import_archives_are_refused_and_leave_nothing() {
    require_root();
    let work = store_dir();
    let store = work.path().join("store");
    let env = [("NETLAB_DATA_DIR", store.to_str().unwrap())];
    // A root-only host file the archives point at.
    let secret_text = format!("netlab-secret-{}\n", std::process::id());
    let secret = work.path().join("secret");
    std::fs::write(&secret, &secret_text).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let secret_path = secret.to_str().unwrap();

    let layer = tar(&[E::File("hello", b"hi")]);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(&layer)]}
    })
    .to_string();
    let manifest = serde_json::json!([{
        "Config": "config.json", "RepoTags": ["netlabtest/hostile-import:1"], "Layers": ["l/layer.tar"]
    }])
    .to_string();
    let big = vec![b' '; (4 << 20) + 1];
    let (layer_s, big_s, none): (&[u8], &[u8], &[u8]) = (&layer, &big, b"");
    use tar::EntryType::{Char, Fifo, Link, Regular, Symlink};
    type Member<'a> = (&'a str, tar::EntryType, &'a str, &'a [u8]);
    let m = manifest.as_bytes();
    let c = config.as_bytes();
    let cases: Vec<(&str, Vec<Member>, &str)> = vec![
        (
            "config.json -> a 0600 host file",
            vec![
                ("manifest.json", Regular, "", m),
                ("config.json", Symlink, secret_path, none),
                ("l/layer.tar", Regular, "", layer_s),
            ],
            "outside the archive",
        ),
        (
            "layer.tar -> /dev/zero",
            vec![
                ("manifest.json", Regular, "", m),
                ("config.json", Regular, "", c),
                ("l/layer.tar", Symlink, "/dev/zero", none),
            ],
            "outside the archive",
        ),
        (
            "config.json -> ../../secret (relative)",
            vec![
                ("manifest.json", Regular, "", m),
                (
                    "config.json",
                    Symlink,
                    "../../../../../../../../secret",
                    none,
                ),
                ("l/layer.tar", Regular, "", layer_s),
            ],
            "outside the archive",
        ),
        (
            "config.json hard link to a host file",
            vec![
                ("manifest.json", Regular, "", m),
                ("config.json", Link, secret_path, none),
                ("l/layer.tar", Regular, "", layer_s),
            ],
            "outside the archive",
        ),
        (
            "layer.tar a FIFO",
            vec![
                ("manifest.json", Regular, "", m),
                ("config.json", Regular, "", c),
                ("l/layer.tar", Fifo, "", none),
            ],
            "FIFO",
        ),
        (
            "layer.tar a character device (/dev/zero's numbers)",
            vec![
                ("manifest.json", Regular, "", m),
                ("config.json", Regular, "", c),
                ("l/layer.tar", Char, "", none),
            ],
            "character device",
        ),
        (
            "config.json over 4 MiB",
            vec![
                ("manifest.json", Regular, "", m),
                ("config.json", Regular, "", big_s),
                ("l/layer.tar", Regular, "", layer_s),
            ],
            "larger than",
        ),
        (
            "a layer whose config is fine but the layer link leads to a missing member",
            vec![
                ("manifest.json", Regular, "", m),
                ("config.json", Regular, "", c),
                ("l/layer.tar", Symlink, "../nothing", none),
            ],
            "not a regular file of the archive",
        ),
    ];
    for (what, members, expect) in &cases {
        let archive = work.path().join("hostile.tar");
        raw_archive(&archive, members);
        let out = netlab_within(
            &["images", "import", archive.to_str().unwrap()],
            &env,
            Duration::from_secs(30),
        );
        let err = failed(&out, what);
        assert!(
            err.contains("refused") && err.contains(expect),
            "{what}: {err}"
        );
        assert!(
            !err.contains(secret_text.trim()),
            "{what}: the error shows the secret: {err}"
        );
        // Nothing of the host and nothing of the failed import stays.
        let left: Vec<_> = files_under(&store)
            .into_iter()
            .filter(|p| !p.ends_with(".lock") && !p.ends_with(".gc.lock"))
            .collect();
        assert!(left.is_empty(), "{what}: the failed import left {left:?}");
        assert!(!store
            .join("images/blobs/sha256")
            .join(sha(secret_text.as_bytes()).trim_start_matches("sha256:"))
            .exists());
        assert!(files_under(&store)
            .iter()
            .all(|p| !p.to_string_lossy().contains(".import-")));
        failed(
            &netlab_env(&["images", "inspect", "netlabtest/hostile-import:1"], &env),
            "inspect",
        );
    }

    // An OCI layout (tar) whose config blob is a symlink to the host file.
    let layout = work.path().join("layout");
    let (md, _) = oci_layout(
        &layout,
        std::slice::from_ref(&layer),
        Some("netlabtest/hostile-layout:1"),
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            layout
                .join("blobs/sha256")
                .join(md.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    let cd = manifest["config"]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let blob = layout.join("blobs/sha256").join(&cd);
    std::fs::remove_file(&blob).unwrap();
    std::os::unix::fs::symlink(&secret, &blob).unwrap();
    // As a directory: the symlinked blob is refused.
    let err = failed(
        &netlab_within(
            &["images", "import", layout.to_str().unwrap()],
            &env,
            Duration::from_secs(30),
        ),
        "layout directory with a symlinked blob",
    );
    assert!(
        err.contains("is a symlink") && err.contains("refused"),
        "{err}"
    );
    // As an archive (symlink kept as a symlink member): refused too.
    let archive = work.path().join("layout.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&archive).unwrap());
    b.follow_symlinks(false);
    b.append_dir_all(".", &layout).unwrap();
    b.finish().unwrap();
    drop(b);
    let err = failed(
        &netlab_within(
            &["images", "import", archive.to_str().unwrap()],
            &env,
            Duration::from_secs(30),
        ),
        "layout archive with a symlinked blob",
    );
    assert!(err.contains("refused"), "{err}");
    let left: Vec<_> = files_under(&store)
        .into_iter()
        .filter(|p| !p.ends_with(".lock") && !p.ends_with(".gc.lock"))
        .collect();
    assert!(left.is_empty(), "the failed layout imports left {left:?}");

    // `docker save` links a layer two images share to the first copy: a link
    // between members is read as that member.
    let manifest = serde_json::json!([{
        "Config": "config.json", "RepoTags": ["netlabtest/linked-layer:1"], "Layers": ["b/layer.tar"]
    }])
    .to_string();
    let archive = work.path().join("linked.tar");
    raw_archive(
        &archive,
        &[
            ("manifest.json", Regular, "", manifest.as_bytes()),
            ("config.json", Regular, "", c),
            ("b/layer.tar", Symlink, "../a/layer.tar", none),
            ("a/layer.tar", Regular, "", layer_s),
        ],
    );
    ok(
        &netlab_within(
            &["images", "import", archive.to_str().unwrap()],
            &env,
            Duration::from_secs(30),
        ),
        "import with a link between members",
    );
    ok(
        &netlab_env(&["images", "inspect", "netlabtest/linked-layer:1"], &env),
        "inspect",
    );
}

/// A registry on 127.0.0.1 that lies: what it serves for each repository is
/// `serve`'s answer. Counts the body bytes it managed to send.
struct HostileRegistry {
    addr: String,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// What the hostile registry answers to a path.
enum Answer {
    /// 200 with this body.
    Body(Vec<u8>),
    /// 200, `Content-Length: declared` (if any), then zeros without end.
    Endless {
        declared: Option<u64>,
    },
    /// 200, `Content-Length: declared`, then nothing, forever.
    Stall {
        declared: u64,
    },
    NotFound,
}

impl HostileRegistry {
    fn start(serve: impl Fn(&str) -> Answer + Send + Sync + 'static) -> HostileRegistry {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let serve = std::sync::Arc::new(serve);
        let counter = sent.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let (serve, counter) = (serve.clone(), counter.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut first = String::new();
                    if reader.read_line(&mut first).is_err() {
                        return;
                    }
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                    }
                    let path = first.split(' ').nth(1).unwrap_or("/").to_string();
                    let head = |len: Option<u64>| {
                        let mut h = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nDocker-Distribution-API-Version: registry/2.0\r\n".to_string();
                        if let Some(n) = len {
                            h.push_str(&format!("Content-Length: {n}\r\n"));
                        }
                        h.push_str("\r\n");
                        h
                    };
                    let answer = if path == "/v2/" {
                        Answer::Body(b"{}".to_vec())
                    } else {
                        serve(&path)
                    };
                    match answer {
                        Answer::Body(b) => {
                            let _ = conn.write_all(head(Some(b.len() as u64)).as_bytes());
                            let _ = conn.write_all(&b);
                        }
                        Answer::Endless { declared } => {
                            let _ = conn.write_all(head(declared).as_bytes());
                            let zeros = vec![0u8; 64 * 1024];
                            while conn.write_all(&zeros).is_ok() {
                                counter.fetch_add(
                                    zeros.len() as u64,
                                    std::sync::atomic::Ordering::SeqCst,
                                );
                            }
                        }
                        Answer::Stall { declared } => {
                            let _ = conn.write_all(head(Some(declared)).as_bytes());
                            std::thread::sleep(Duration::from_secs(120));
                        }
                        Answer::NotFound => {
                            let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
                        }
                    }
                });
            }
        });
        HostileRegistry { addr, sent }
    }
}

#[test]
fn hostile_registries_are_refused_quickly_and_leave_nothing() {
    require_root();
    let layer = gzip(&tar(&[E::File("x", b"x")]));
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha(&tar(&[E::File("x", b"x")]))]}
    })
    .to_string();
    let (layer_d, config_d) = (sha(&layer), sha(config.as_bytes()));
    let manifest = |config_size: usize, layer_size: usize| {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_d, "size": layer_size}]
        })
        .to_string()
        .into_bytes()
    };
    let (m_ok, m_liar_layer, m_liar_config, m_huge_config) = (
        manifest(config.len(), layer.len()),
        manifest(config.len(), 100),
        manifest(100, layer.len()),
        manifest(5 << 20, layer.len()),
    );
    let (ld, cd) = (layer_d.clone(), config_d.clone());
    let config_bytes = config.clone().into_bytes();
    let layer_bytes = layer.clone();
    let registry = HostileRegistry::start(move |path| {
        let repo = path
            .trim_start_matches("/v2/")
            .split('/')
            .next()
            .unwrap_or("");
        let is_manifest = path.contains("/manifests/");
        let blob = path.rsplit('/').next().unwrap_or("");
        match (repo, is_manifest) {
            ("bigmanifest", true) => Answer::Endless { declared: None },
            ("stallmanifest", true) => Answer::Stall { declared: 1000 },
            ("liarlayer", true) => Answer::Body(m_liar_layer.clone()),
            ("liarconfig", true) => Answer::Body(m_liar_config.clone()),
            ("hugeconfig", true) => Answer::Body(m_huge_config.clone()),
            (_, true) => Answer::Body(m_ok.clone()),
            ("stalllayer", false) if blob == ld => Answer::Stall { declared: 1000 },
            ("liarlayer", false) if blob == ld => Answer::Endless { declared: None },
            ("liarconfig", false) if blob == cd => Answer::Endless {
                declared: Some(1 << 30),
            },
            ("hugeconfig", false) if blob == cd => Answer::Endless { declared: None },
            (_, false) if blob == cd => Answer::Body(config_bytes.clone()),
            (_, false) if blob == ld => Answer::Body(layer_bytes.clone()),
            _ => Answer::NotFound,
        }
    });
    let work = store_dir();
    let store = work.path().join("store");
    let cfg = no_registries_config(work.path());
    let env = [
        ("NETLAB_DATA_DIR", store.to_str().unwrap()),
        ("NETLAB_REGISTRIES_CONFIG", cfg.as_str()),
        ("NETLAB_REGISTRY_TIMEOUT", "2"),
    ];
    let cases = [
        ("bigmanifest", "more than 4194304 bytes"),
        ("stallmanifest", "stalled"),
        ("liarlayer", "more than 100 bytes"),
        ("liarconfig", "more than 100 bytes"),
        ("hugeconfig", "refused"),
        ("stalllayer", "stalled"),
    ];
    for (repo, expect) in cases {
        let image = format!("{}/{repo}:1", registry.addr);
        let before = registry.sent.load(std::sync::atomic::Ordering::SeqCst);
        let start = std::time::Instant::now();
        let out = netlab_within(&["pull", "--quiet", &image], &env, Duration::from_secs(40));
        let err = failed(&out, repo);
        assert!(err.contains(expect), "{repo}: {err}");
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{repo}: took {:?}",
            start.elapsed()
        );
        // The registry could not push more than the cap and the socket
        // buffers before netlab hung up (not 300 MB or 1 GB).
        let sent = registry.sent.load(std::sync::atomic::Ordering::SeqCst) - before;
        assert!(
            sent < 64 << 20,
            "{repo}: the registry sent {sent} bytes before netlab stopped"
        );
        let left: Vec<_> = files_under(&store)
            .into_iter()
            .filter(|p| !p.ends_with(".lock") && !p.ends_with(".gc.lock"))
            .collect();
        assert!(left.is_empty(), "{repo}: the failed pull left {left:?}");
    }
    // The same registry's honest image pulls (the test's server works).
    ok(
        &netlab_within(
            &["pull", "--quiet", &format!("{}/honest:1", registry.addr)],
            &env,
            Duration::from_secs(40),
        ),
        "honest pull",
    );
}

#[test]
fn prune_removes_what_no_image_or_container_uses() {
    require_root();
    let work = store_dir();
    let store = work.path().join("store");
    let env = [("NETLAB_DATA_DIR", store.to_str().unwrap())];
    let import = |name: &str, file: &str| {
        let layout = work.path().join(name.replace([':', '/'], "_"));
        let (md, layers) = oci_layout(&layout, &[tar(&[E::File(file, name.as_bytes())])], None);
        ok(
            &netlab_env(
                &["images", "import", layout.to_str().unwrap(), "--tag", name],
                &env,
            ),
            "import",
        );
        (md, layers[0].clone())
    };
    let (keep_m, keep_l) = import("netlabtest/prune-keep:1", "a");
    let (gone_m, gone_l) = import("netlabtest/prune-gone:1", "b");
    let (used_m, used_l) = import("netlabtest/prune-used:1", "c");
    let blob = |d: &str| {
        store
            .join("images/blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let layer_dir = |d: &str| store.join("layers").join(d.replace(':', "-"));
    for d in [&keep_l, &gone_l, &used_l] {
        assert!(layer_dir(d).is_dir(), "{d} unpacked");
    }
    ok(
        &netlab_env(&["images", "rm", "netlabtest/prune-gone:1"], &env),
        "rm",
    );
    ok(
        &netlab_env(&["images", "rm", "netlabtest/prune-used:1"], &env),
        "rm",
    );
    // A stray blob and leftovers of a dead pull and import.
    let stray = blob(&sha(b"stray"));
    std::fs::write(&stray, b"stray").unwrap();
    let dead_tmp = store.join("images/blobs/sha256/.tmp-4999999-0");
    std::fs::write(&dead_tmp, b"half").unwrap();
    let dead_import = store.join("images/.import-4999999");
    std::fs::create_dir_all(dead_import.join("x")).unwrap();
    // A running container stacks the untagged image's layer.
    let ctr = work.path().join("ctr");
    for d in ["upper", "work", "rootfs"] {
        std::fs::create_dir_all(ctr.join(d)).unwrap();
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        layer_dir(&used_l).display(),
        ctr.join("upper").display(),
        ctr.join("work").display()
    );
    nix::mount::mount(
        Some("overlay"),
        &ctr.join("rootfs"),
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(options.as_str()),
    )
    .expect("mounting a test overlay");
    let pruned = netlab_env(&["images", "prune"], &env);
    let _ = nix::mount::umount2(&ctr.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
    let out = ok(&pruned, "prune");
    assert!(out.contains("kept (a running container uses it)"), "{out}");
    for gone in [
        &blob(&gone_m),
        &blob(&gone_l),
        &layer_dir(&gone_l),
        &blob(&used_m),
        &blob(&used_l),
        &stray,
        &dead_tmp,
        &dead_import,
    ] {
        assert!(!gone.exists(), "{} survived prune:\n{out}", gone.display());
    }
    for kept in [
        &blob(&keep_m),
        &blob(&keep_l),
        &layer_dir(&keep_l),
        &layer_dir(&used_l),
    ] {
        assert!(kept.exists(), "{} was pruned:\n{out}", kept.display());
    }
    ok(
        &netlab_env(&["images", "inspect", "netlabtest/prune-keep:1"], &env),
        "inspect after prune",
    );
    // Unmounted, the container's layer goes too.
    ok(&netlab_env(&["images", "prune"], &env), "prune");
    assert!(!layer_dir(&used_l).exists());
    assert!(layer_dir(&keep_l).exists());
}
