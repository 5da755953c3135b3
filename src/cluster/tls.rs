//! Self-signed certificates for the tutorial's HTTPS section, without Go,
//! Make or openssl: what
//! `openssl req -x509 -nodes -days 365 -newkey rsa:2048 -subj "/CN=my-nginx/O=my-nginx"`
//! makes, made with rcgen; and the check `kubectl create secret tls` does
//! that a certificate and a key belong together (rustls).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, SanType,
    PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// What to put in a certificate.
#[derive(Debug, Clone)]
pub struct Request {
    /// `/CN=my-nginx/O=my-nginx`, openssl's `-subj` syntax.
    pub subject: String,
    /// DNS names (and IP addresses) besides the CN, which is always one.
    pub alt_names: Vec<String>,
    pub days: u32,
    pub key: KeyKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA 2048, as the tutorial's openssl command.
    Rsa,
    /// ECDSA P-256.
    Ecdsa,
}

/// A key and its certificate, in PEM.
pub struct Generated {
    pub cert_pem: String,
    pub key_pem: String,
}

/// openssl's `-subj "/CN=a/O=b"` → (attribute, value) pairs.
pub fn parse_subject(subject: &str) -> Result<Vec<(DnType, String)>, String> {
    let body = subject.strip_prefix('/').ok_or_else(|| {
        format!("subject {subject:?}: write it as openssl does, e.g. /CN=my-nginx/O=my-nginx")
    })?;
    let mut out = Vec::new();
    for part in body.split('/').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            format!("subject {subject:?}: {part:?} is not KEY=VALUE (e.g. CN=my-nginx)")
        })?;
        let t = match k {
            "CN" => DnType::CommonName,
            "O" => DnType::OrganizationName,
            "OU" => DnType::OrganizationalUnitName,
            "C" => DnType::CountryName,
            "ST" => DnType::StateOrProvinceName,
            "L" => DnType::LocalityName,
            other => {
                return Err(format!(
                    "subject {subject:?}: attribute {other:?} is not supported (use CN, O, OU, C, ST, L)"
                ))
            }
        };
        if v.is_empty() {
            return Err(format!("subject {subject:?}: {k} is empty"));
        }
        out.push((t, v.to_string()));
    }
    if !out.iter().any(|(t, _)| *t == DnType::CommonName) {
        return Err(format!(
            "subject {subject:?} has no CN: clients check the CN (or a SAN) against the name they connect to, e.g. /CN=my-nginx"
        ));
    }
    Ok(out)
}

/// A new key and a self-signed certificate for it. Like openssl's `-x509`
/// output it is its own CA (so `curl --cacert tls.crt` trusts it); the CN
/// is also a subjectAltName, which is what clients match today.
pub fn self_signed(req: &Request) -> Result<Generated, String> {
    let subject = parse_subject(&req.subject)?;
    if !(1..=36500).contains(&req.days) {
        return Err(format!("--days {}: use 1 to 36500", req.days));
    }
    let cn = subject
        .iter()
        .find(|(t, _)| *t == DnType::CommonName)
        .map(|(_, v)| v.clone())
        .expect("checked");
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    for (t, v) in subject {
        params.distinguished_name.push(t, v);
    }
    let mut names = vec![cn];
    for n in &req.alt_names {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    for n in names {
        let san = match n.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(n.clone().try_into().map_err(|_| {
                format!("{n:?} is not a DNS name (a subject alternative name must be one)")
            })?),
        };
        params.subject_alt_names.push(san);
    }
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(req.days.into());
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = match req.key {
        KeyKind::Rsa => KeyPair::generate_for(&PKCS_RSA_SHA256),
        KeyKind::Ecdsa => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
    }
    .map_err(|e| format!("generating the key: {e}"))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("signing the certificate: {e}"))?;
    Ok(Generated {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Whether `cert_pem` (a chain, leaf first) and `key_pem` are a pair, as
/// `kubectl create secret tls` checks (Go's tls.X509KeyPair).
pub fn check_pair(cert_pem: &[u8], key_pem: &[u8]) -> Result<(), String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the certificate is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err(
            "no certificate found in the certificate file (expected -----BEGIN CERTIFICATE-----)"
                .into(),
        );
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("no private key found in the key file ({e})"))?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|e| format!("the private key cannot be used: {e}"))?;
    rustls::sign::CertifiedKey::new(certs, signing)
        .keys_match()
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                "private key does not match public key: the certificate was made for another key"
                    .to_string()
            }
            other => format!("the certificate cannot be read: {other}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(key: KeyKind) -> Request {
        Request {
            subject: "/CN=my-nginx/O=my-nginx".into(),
            alt_names: vec!["my-nginx.default.svc.cluster.local".into()],
            days: 365,
            key,
        }
    }

    #[test]
    fn subjects() {
        let s = parse_subject("/CN=my-nginx/O=my-nginx").unwrap();
        assert_eq!(s.len(), 2);
        assert!(parse_subject("CN=x").unwrap_err().contains("/CN="));
        assert!(parse_subject("/O=x").unwrap_err().contains("no CN"));
        assert!(parse_subject("/XX=y/CN=x")
            .unwrap_err()
            .contains("not supported"));
    }

    #[test]
    fn generated_pairs_match_and_mismatch_is_caught() {
        let a = self_signed(&request(KeyKind::Ecdsa)).unwrap();
        assert!(a.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        check_pair(a.cert_pem.as_bytes(), a.key_pem.as_bytes()).unwrap();
        let b = self_signed(&request(KeyKind::Rsa)).unwrap();
        assert!(b.key_pem.contains("PRIVATE KEY"));
        check_pair(b.cert_pem.as_bytes(), b.key_pem.as_bytes()).unwrap();
        let err = check_pair(a.cert_pem.as_bytes(), b.key_pem.as_bytes()).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
        assert!(check_pair(b"junk", b.key_pem.as_bytes()).is_err());
        assert!(check_pair(a.cert_pem.as_bytes(), b"junk").is_err());
    }
}
