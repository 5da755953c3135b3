//! The lab's certificates, as kubeadm and kind make them, with rcgen: a CA
//! of the lab's own, the API server's certificate (for the loopback address
//! kubectl uses and the names pods use: `kubernetes.default.svc`, the
//! `kubernetes` Service's ClusterIP), and the admin's client certificate
//! (CN `kubernetes-admin`, O `system:masters`, as kind's kubeconfig has).
//! Another lab's CA signs other certificates, so one lab's kubeconfig is no
//! key to another lab.
//!
//! And the key that signs ServiceAccount tokens (`sa.key`, Ed25519: see
//! `tokens.rs`).
//!
//! Files under `/run/netlab/<lab>/pki/`, root-only (the directory is 0700,
//! the keys 0600).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The user the admin certificate names (kind's and kubeadm's).
pub const ADMIN_USER: &str = "kubernetes-admin";
pub const ADMIN_GROUP: &str = "system:masters";

/// A lab's certificates and keys, in PEM.
#[derive(Debug, Clone)]
pub struct LabPki {
    pub ca_cert: String,
    pub ca_key: String,
    pub server_cert: String,
    pub server_key: String,
    pub admin_cert: String,
    pub admin_key: String,
    /// Signs the lab's ServiceAccount tokens (PKCS#8 PEM).
    pub sa_key: String,
}

const FILES: [&str; 7] = [
    "ca.crt",
    "ca.key",
    "apiserver.crt",
    "apiserver.key",
    "admin.crt",
    "admin.key",
    "sa.key",
];

fn params(cn: &str, org: Option<&str>, days: i64) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    if let Some(o) = org {
        p.distinguished_name.push(DnType::OrganizationName, o);
    }
    p.distinguished_name.push(DnType::CommonName, cn);
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = now + time::Duration::days(days);
    p
}

fn key() -> Result<KeyPair, String> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| format!("generating a key: {e}"))
}

/// A new key for ServiceAccount tokens.
fn token_key() -> Result<String, String> {
    KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .map(|k| k.serialize_pem())
        .map_err(|e| format!("generating a key: {e}"))
}

/// New certificates for a lab. `server_ips` are the addresses clients dial
/// (127.0.0.1, the `kubernetes` Service's ClusterIP, the in-lab address).
pub fn generate(lab: &str, server_ips: &[IpAddr]) -> Result<LabPki, String> {
    let sign = |e: rcgen::Error| format!("signing a certificate: {e}");
    let ca_key = key()?;
    let mut ca = params(&format!("netlab-{lab}-ca"), None, 3650);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca.self_signed(&ca_key).map_err(sign)?;
    let issuer = Issuer::from_params(&ca, &ca_key);

    let server_key = key()?;
    let mut server = params("kube-apiserver", None, 365);
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    for name in [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ] {
        server
            .subject_alt_names
            .push(SanType::DnsName(name.try_into().expect("a valid DNS name")));
    }
    for ip in server_ips {
        server.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    let server_cert = server.signed_by(&server_key, &issuer).map_err(sign)?;

    let admin_key = key()?;
    let mut admin = params(ADMIN_USER, Some(ADMIN_GROUP), 365);
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin_cert = admin.signed_by(&admin_key, &issuer).map_err(sign)?;

    Ok(LabPki {
        ca_cert: ca_cert.pem(),
        ca_key: ca_key.serialize_pem(),
        server_cert: server_cert.pem(),
        server_key: server_key.serialize_pem(),
        admin_cert: admin_cert.pem(),
        admin_key: admin_key.serialize_pem(),
        sa_key: token_key()?,
    })
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(text.as_bytes())
}

pub fn dir(lab: &str) -> PathBuf {
    crate::paths::lab_dir(lab).join("pki")
}

impl LabPki {
    fn contents(&self) -> [&str; 7] {
        [
            &self.ca_cert,
            &self.ca_key,
            &self.server_cert,
            &self.server_key,
            &self.admin_cert,
            &self.admin_key,
            &self.sa_key,
        ]
    }

    /// Writes the files, root-only.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(dir)?;
        for (name, text) in FILES.iter().zip(self.contents()) {
            write_private(&dir.join(name), text)?;
        }
        Ok(())
    }

    /// The lab's files. A lab made before tokens existed gets its token
    /// key now (its certificates, and so its kubeconfig, stay).
    pub fn read(dir: &Path) -> std::io::Result<LabPki> {
        let read = |n: &str| std::fs::read_to_string(dir.join(n));
        let sa_key = match read(FILES[6]) {
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir.join(FILES[0]).exists() => {
                let k = token_key().map_err(std::io::Error::other)?;
                write_private(&dir.join(FILES[6]), &k)?;
                k
            }
            Err(e) => return Err(e),
        };
        Ok(LabPki {
            ca_cert: read(FILES[0])?,
            ca_key: read(FILES[1])?,
            server_cert: read(FILES[2])?,
            server_key: read(FILES[3])?,
            admin_cert: read(FILES[4])?,
            admin_key: read(FILES[5])?,
            sa_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    #[test]
    fn admin_and_server_chain_to_the_lab_ca_only() {
        let a = generate("a", &["127.0.0.1".parse().unwrap()]).unwrap();
        let b = generate("b", &["127.0.0.1".parse().unwrap()]).unwrap();
        let roots = |p: &LabPki| {
            let mut r = rustls::RootCertStore::empty();
            r.add(CertificateDer::from_pem_slice(p.ca_cert.as_bytes()).unwrap())
                .unwrap();
            std::sync::Arc::new(r)
        };
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots(&a), provider)
                .build()
                .unwrap();
        let now = rustls::pki_types::UnixTime::now();
        let cert = |p: &LabPki| CertificateDer::from_pem_slice(p.admin_cert.as_bytes()).unwrap();
        assert!(verifier.verify_client_cert(&cert(&a), &[], now).is_ok());
        assert!(verifier.verify_client_cert(&cert(&b), &[], now).is_err());
        crate::cluster::tls::check_pair(a.admin_cert.as_bytes(), a.admin_key.as_bytes()).unwrap();
        crate::cluster::tls::check_pair(a.server_cert.as_bytes(), a.server_key.as_bytes()).unwrap();
    }

    #[test]
    fn files_round_trip_root_only() {
        use std::os::unix::fs::PermissionsExt;
        let p = generate("rt", &[]).unwrap();
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("pki");
        p.write(&dir).unwrap();
        let back = LabPki::read(&dir).unwrap();
        assert_eq!(back.admin_key, p.admin_key);
        let mode = |f: &str| std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(""), 0o700);
        assert_eq!(mode("ca.key"), 0o600);
    }
}
