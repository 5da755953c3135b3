//! Secrets and ConfigMaps: the API server's validation and defaulting of
//! them, and the objects `kubectl create secret …` / `create configmap …`
//! build. Pure: file contents come in as bytes.
//!
//! Secret data never goes to a log: messages name keys and sizes only.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use std::collections::BTreeMap;

pub const TYPE_OPAQUE: &str = "Opaque";
pub const TYPE_TLS: &str = "kubernetes.io/tls";
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_PRIVATE_KEY_KEY: &str = "tls.key";
/// A long-lived ServiceAccount token the token controller fills in
/// (Kubernetes' "manually create a long-lived API token").
pub const TYPE_SA_TOKEN: &str = "kubernetes.io/service-account-token";
pub const SA_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
pub const SA_UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";
/// The API server's limit on a Secret's or ConfigMap's data.
pub const MAX_SIZE: usize = 1024 * 1024;

/// A data key, as the API server checks it: `[-._a-zA-Z0-9]+`, at most 253
/// characters, not `.` or `..` (keys become file names in volumes).
pub fn valid_key(key: &str) -> Result<(), String> {
    if key.is_empty()
        || key.len() > 253
        || key == "."
        || key == ".."
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(format!(
            "key {key:?} is not valid: a key must consist of alphanumeric characters, '-', '_' or '.' (at most 253, not \".\" or \"..\")"
        ));
    }
    Ok(())
}

/// The API server's defaulting and validation of a Secret: `stringData` is
/// merged into `data` (it wins) and dropped, the type defaults to Opaque,
/// keys are checked, and a TLS secret must carry `tls.crt` and `tls.key`.
pub fn normalize_secret(mut s: Secret) -> Result<Secret, String> {
    let mut data = s.data.take().unwrap_or_default();
    for (k, v) in s.string_data.take().unwrap_or_default() {
        data.insert(k, ByteString(v.into_bytes()));
    }
    let mut size = 0;
    for (k, v) in &data {
        valid_key(k).map_err(|m| format!("data: {m}"))?;
        size += v.0.len();
    }
    if size > MAX_SIZE {
        return Err(format!(
            "data is {size} bytes: a Secret holds at most {MAX_SIZE} bytes"
        ));
    }
    let type_ = s.type_.get_or_insert_with(|| TYPE_OPAQUE.into()).clone();
    if type_ == TYPE_SA_TOKEN
        && !s
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(SA_NAME_ANNOTATION))
    {
        return Err(format!(
            "metadata.annotations[{SA_NAME_ANNOTATION}]: Required value: a secret of type {TYPE_SA_TOKEN} names its ServiceAccount"
        ));
    }
    if type_ == TYPE_TLS {
        for key in [TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY] {
            if !data.contains_key(key) {
                return Err(format!(
                    "data[{key}]: required for a secret of type {TYPE_TLS}"
                ));
            }
        }
    }
    s.data = (!data.is_empty()).then_some(data);
    Ok(s)
}

/// What a token Secret's token is minted for: the namespace, the
/// ServiceAccount's and the Secret's (name, uid), and when the Secret was
/// made (Unix seconds: the same token each time it is minted).
pub struct TokenFor<'a> {
    pub namespace: &'a str,
    pub account: (&'a str, &'a str),
    pub secret: (&'a str, &'a str),
    pub created: i64,
}

/// kube-controller-manager's token controller: each Secret of type
/// [`TYPE_SA_TOKEN`] whose ServiceAccount exists and that has no token yet
/// gets one (`mint`), with the lab's CA and its namespace, and the
/// account's uid as an annotation. Returns whether one changed.
pub fn fill_token_secrets(
    st: &mut super::ClusterState,
    ca: &str,
    mint: &dyn Fn(TokenFor) -> String,
) -> bool {
    let mut changed = false;
    for i in 0..st.secrets.len() {
        let s = &st.secrets[i];
        if s.type_.as_deref() != Some(TYPE_SA_TOKEN)
            || s.data.as_ref().is_some_and(|d| d.contains_key("token"))
        {
            continue;
        }
        let ns = super::state::namespace(&s.metadata).to_string();
        let Some(account) = s
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SA_NAME_ANNOTATION))
            .cloned()
        else {
            continue;
        };
        let Some(account_uid) = st
            .service_accounts
            .iter()
            .find(|a| {
                a.metadata.name.as_deref() == Some(account.as_str())
                    && super::state::namespace(&a.metadata) == ns
            })
            .and_then(|a| a.metadata.uid.clone())
        else {
            continue; // the controller waits for the account
        };
        let token = mint(TokenFor {
            namespace: &ns,
            account: (&account, &account_uid),
            secret: (
                s.metadata.name.as_deref().unwrap_or_default(),
                s.metadata.uid.as_deref().unwrap_or_default(),
            ),
            created: s
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(0, |t| t.0.timestamp()),
        });
        let s = &mut st.secrets[i];
        let data = s.data.get_or_insert_with(BTreeMap::new);
        data.insert("token".into(), ByteString(token.into_bytes()));
        data.insert("ca.crt".into(), ByteString(ca.as_bytes().to_vec()));
        data.insert("namespace".into(), ByteString(ns.into_bytes()));
        s.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(SA_UID_ANNOTATION.into(), account_uid);
        changed = true;
    }
    changed
}

/// The API server's validation of a ConfigMap: keys, no key in both `data`
/// and `binaryData`, the size limit.
pub fn validate_config_map(c: &ConfigMap) -> Result<(), String> {
    let mut size = 0;
    for k in c.data.iter().flat_map(|d| d.keys()) {
        valid_key(k).map_err(|m| format!("data: {m}"))?;
    }
    for (k, v) in c.binary_data.iter().flatten() {
        valid_key(k).map_err(|m| format!("binaryData: {m}"))?;
        if c.data.as_ref().is_some_and(|d| d.contains_key(k)) {
            return Err(format!(
                "binaryData: key {k:?} is also in data: a key can be in only one of them"
            ));
        }
        size += v.0.len();
    }
    size += c.data.iter().flatten().map(|(_, v)| v.len()).sum::<usize>();
    if size > MAX_SIZE {
        return Err(format!(
            "data is {size} bytes: a ConfigMap holds at most {MAX_SIZE} bytes"
        ));
    }
    Ok(())
}

/// How many entries `get secrets` / `get configmaps` count in DATA.
pub fn secret_data_count(s: &Secret) -> usize {
    s.data.as_ref().map_or(0, |d| d.len())
}

pub fn config_map_data_count(c: &ConfigMap) -> usize {
    c.data.as_ref().map_or(0, |d| d.len()) + c.binary_data.as_ref().map_or(0, |d| d.len())
}

/// One `--from-file` or `--from-literal` source of `kubectl create secret
/// generic` / `create configmap`, already read.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub value: Vec<u8>,
    /// Where it came from, for error messages (`--from-file=default.conf`).
    pub origin: String,
}

fn collect(entries: Vec<Entry>) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut out = BTreeMap::new();
    for e in entries {
        valid_key(&e.key).map_err(|m| format!("{}: {m}", e.origin))?;
        if out.insert(e.key.clone(), e.value).is_some() {
            return Err(format!(
                "{}: cannot add key {:?}, another key by that name already exists",
                e.origin, e.key
            ));
        }
    }
    Ok(out)
}

fn meta(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        ..Default::default()
    }
}

/// `kubectl create secret generic NAME --from-file … --from-literal … [--type]`.
pub fn generic_secret(
    name: &str,
    namespace: &str,
    type_: Option<&str>,
    entries: Vec<Entry>,
) -> Result<Secret, String> {
    let data = collect(entries)?;
    normalize_secret(Secret {
        metadata: meta(name, namespace),
        type_: Some(type_.unwrap_or(TYPE_OPAQUE).into()),
        data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
        ..Default::default()
    })
}

/// `kubectl create secret tls NAME --cert … --key …`: the pair is checked
/// to belong together first, as kubectl does.
pub fn tls_secret(
    name: &str,
    namespace: &str,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Secret, String> {
    super::tls::check_pair(cert_pem, key_pem)
        .map_err(|m| format!("failed to load key pair: {m}"))?;
    let data = BTreeMap::from([
        (TLS_CERT_KEY.to_string(), ByteString(cert_pem.to_vec())),
        (
            TLS_PRIVATE_KEY_KEY.to_string(),
            ByteString(key_pem.to_vec()),
        ),
    ]);
    normalize_secret(Secret {
        metadata: meta(name, namespace),
        type_: Some(TYPE_TLS.into()),
        data: Some(data),
        ..Default::default()
    })
}

/// `kubectl create configmap NAME --from-file … --from-literal …`: text
/// goes to `data`, anything that is not UTF-8 to `binaryData`.
pub fn config_map(name: &str, namespace: &str, entries: Vec<Entry>) -> Result<ConfigMap, String> {
    let mut data = BTreeMap::new();
    let mut binary = BTreeMap::new();
    for (k, v) in collect(entries)? {
        match String::from_utf8(v) {
            Ok(text) => {
                data.insert(k, text);
            }
            Err(e) => {
                binary.insert(k, ByteString(e.into_bytes()));
            }
        }
    }
    let c = ConfigMap {
        metadata: meta(name, namespace),
        data: (!data.is_empty()).then_some(data),
        binary_data: (!binary.is_empty()).then_some(binary),
        ..Default::default()
    };
    validate_config_map(&c)?;
    Ok(c)
}

/// The key a `--from-file=[key=]path` source gets: the given key, or the
/// file's base name.
pub fn file_key(spec: &str) -> (Option<&str>, &str) {
    match spec.split_once('=') {
        Some((k, p)) if !k.is_empty() => (Some(k), p),
        _ => (None, spec),
    }
}

/// `--from-literal=key=value`.
pub fn literal(spec: &str) -> Result<Entry, String> {
    match spec.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok(Entry {
            key: k.into(),
            value: v.as_bytes().to_vec(),
            origin: format!("--from-literal={k}=…"),
        }),
        _ => Err(format!(
            "--from-literal={spec}: write it as key=value (e.g. --from-literal=user=admin)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(valid_key("tls.crt").is_ok());
        assert!(valid_key("default.conf").is_ok());
        assert!(valid_key("a_b-C.1").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "ü"] {
            assert!(valid_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn string_data_merges_and_wins() {
        let s = Secret {
            data: Some(BTreeMap::from([
                ("a".into(), ByteString(b"1".to_vec())),
                ("b".into(), ByteString(b"2".to_vec())),
            ])),
            string_data: Some(BTreeMap::from([("b".into(), "two".into())])),
            ..Default::default()
        };
        let s = normalize_secret(s).unwrap();
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        assert!(s.string_data.is_none());
        let d = s.data.unwrap();
        assert_eq!(d["a"].0, b"1");
        assert_eq!(d["b"].0, b"two");
    }

    #[test]
    fn tls_secret_needs_both_keys() {
        let s = Secret {
            type_: Some(TYPE_TLS.into()),
            string_data: Some(BTreeMap::from([("tls.crt".into(), "x".into())])),
            ..Default::default()
        };
        let err = normalize_secret(s).unwrap_err();
        assert!(err.contains("data[tls.key]"), "{err}");
    }

    #[test]
    fn generic_and_configmap_builders() {
        let entries = vec![
            literal("user=admin").unwrap(),
            Entry {
                key: "bin".into(),
                value: vec![0xff, 0],
                origin: "--from-file=bin".into(),
            },
        ];
        let s = generic_secret("s", "default", None, entries.clone()).unwrap();
        assert_eq!(secret_data_count(&s), 2);
        let c = config_map("c", "default", entries.clone()).unwrap();
        assert_eq!(c.data.as_ref().unwrap()["user"], "admin");
        assert_eq!(c.binary_data.as_ref().unwrap()["bin"].0, vec![0xff, 0]);
        assert_eq!(config_map_data_count(&c), 2);
        let twice = vec![entries[0].clone(), entries[0].clone()];
        assert!(config_map("c", "default", twice)
            .unwrap_err()
            .contains("already exists"));
        assert!(literal("novalue").is_err());
        assert_eq!(file_key("k=path/f"), (Some("k"), "path/f"));
        assert_eq!(file_key("path/f"), (None, "path/f"));
    }

    #[test]
    fn config_map_key_in_both_is_refused() {
        let c = ConfigMap {
            data: Some(BTreeMap::from([("k".into(), "v".into())])),
            binary_data: Some(BTreeMap::from([("k".into(), ByteString(vec![1]))])),
            ..Default::default()
        };
        assert!(validate_config_map(&c).unwrap_err().contains("only one"));
    }

    #[test]
    fn token_secrets_are_filled_once_their_account_exists() {
        use crate::cluster::ClusterState;
        let mut st = ClusterState::empty();
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some("t".into()),
                namespace: Some("default".into()),
                uid: Some("s1".into()),
                annotations: Some([(SA_NAME_ANNOTATION.to_string(), "bot".to_string())].into()),
                ..Default::default()
            },
            type_: Some(TYPE_SA_TOKEN.into()),
            ..Default::default()
        };
        // The account is named, or the secret is refused.
        let mut bare = secret.clone();
        bare.metadata.annotations = None;
        assert!(normalize_secret(bare)
            .unwrap_err()
            .contains(SA_NAME_ANNOTATION));
        st.secrets.push(normalize_secret(secret).unwrap());
        let mint = |t: TokenFor| format!("{}:{}:{}", t.namespace, t.account.0, t.secret.1);
        assert!(!fill_token_secrets(&mut st, "CA", &mint), "no account yet");
        st.service_accounts
            .push(k8s_openapi::api::core::v1::ServiceAccount {
                metadata: ObjectMeta {
                    name: Some("bot".into()),
                    namespace: Some("default".into()),
                    uid: Some("a1".into()),
                    ..Default::default()
                },
                ..Default::default()
            });
        assert!(fill_token_secrets(&mut st, "CA", &mint));
        let data = st.secrets[0].data.clone().unwrap();
        assert_eq!(data["token"].0, b"default:bot:s1");
        assert_eq!(data["ca.crt"].0, b"CA");
        assert_eq!(data["namespace"].0, b"default");
        assert_eq!(
            st.secrets[0].metadata.annotations.as_ref().unwrap()[SA_UID_ANNOTATION],
            "a1"
        );
        assert!(!fill_token_secrets(&mut st, "CA", &mint), "filled once");
    }
}
