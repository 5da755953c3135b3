//! ServiceAccount tokens: the JWTs kube-apiserver signs for the kubelet's
//! projected volumes and for `kubectl create token` (TokenRequest), with
//! Kubernetes' claims (`iss`, `sub` = `system:serviceaccount:NS:NAME`,
//! `aud`, `exp`, and `kubernetes.io`: the namespace, the ServiceAccount's
//! and the pod's names and uids), and their check when one comes back as a
//! `Bearer` credential.
//!
//! Signed with the lab's own key (`pki.rs`), so another lab's token fails
//! its signature. Ed25519 (JWS `EdDSA`), where kube-apiserver uses RS256 by
//! default: nobody but the lab verifies these tokens, the key is made in
//! microseconds at a lab's first start (RSA takes a noticeable part of
//! `up`), and its signatures are deterministic, so a pod's token is the same
//! bytes each time the kubelet writes its volume.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// kube-apiserver's default issuer, and the audience its tokens are for.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// What the kubelet asks for a projected token (`expirationSeconds`
/// 3607); kube-apiserver extends it to a year
/// (`--service-account-extend-token-expiration`, on by default), warning
/// in `warnafter` when the short life is over.
pub const KUBELET_SECONDS: i64 = 3607;
pub const EXTENDED_SECONDS: i64 = 365 * 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ref {
    pub name: String,
    pub uid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Private {
    pub namespace: String,
    pub serviceaccount: Ref,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Ref>,
    /// A long-lived token kept in a Secret: it works while the Secret does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnafter: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: Private,
}

/// What a token is for.
#[derive(Debug, Clone)]
pub struct Grant {
    pub namespace: String,
    pub service_account: Ref,
    /// The pod it is bound to: it stops working when the pod goes.
    pub pod: Option<Ref>,
    /// The Secret it is kept in: it stops working when the Secret goes.
    pub secret: Option<Ref>,
    /// Empty: the API's own audience.
    pub audiences: Vec<String>,
    /// Unix seconds.
    pub issued: i64,
    pub seconds: i64,
    pub warn_after: Option<i64>,
    pub id: String,
}

pub fn subject(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// Signs and checks the lab's tokens.
pub struct Issuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Issuer {
    /// From the lab's token key (PKCS#8 PEM, Ed25519).
    pub fn new(key_pem: &str) -> Result<Issuer, String> {
        let bad = |e: &dyn std::fmt::Display| format!("the lab's token key: {e}");
        let pair = rcgen::KeyPair::from_pem(key_pem).map_err(|e| bad(&e))?;
        Ok(Issuer {
            encoding: EncodingKey::from_ed_pem(key_pem.as_bytes()).map_err(|e| bad(&e))?,
            decoding: DecodingKey::from_ed_pem(pair.public_key_pem().as_bytes())
                .map_err(|e| bad(&e))?,
        })
    }

    /// A signed token and when it expires (Unix seconds).
    pub fn mint(&self, g: &Grant) -> (String, i64) {
        let exp = g.issued + g.seconds;
        let claims = Claims {
            iss: ISSUER.into(),
            sub: subject(&g.namespace, &g.service_account.name),
            aud: if g.audiences.is_empty() {
                vec![ISSUER.into()]
            } else {
                g.audiences.clone()
            },
            exp,
            iat: g.issued,
            nbf: g.issued,
            jti: g.id.clone(),
            kubernetes: Private {
                namespace: g.namespace.clone(),
                serviceaccount: g.service_account.clone(),
                pod: g.pod.clone(),
                secret: g.secret.clone(),
                warnafter: g.warn_after,
            },
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.encoding)
            .expect("an Ed25519 key signs");
        (token, exp)
    }

    /// The claims of a token this lab signed for its API, not expired at
    /// `now` (Unix seconds). Whether its ServiceAccount (and pod) still
    /// exist is the caller's to check.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, String> {
        self.verify_for(token, now, &[ISSUER])
    }

    /// As `verify`, for a token meant for one of `audiences` (a
    /// TokenReview's).
    pub fn verify_for(&self, token: &str, now: i64, audiences: &[&str]) -> Result<Claims, String> {
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(audiences);
        v.set_issuer(&[ISSUER]);
        // Expiry against `now`, below (testable, no leeway).
        v.validate_exp = false;
        v.required_spec_claims = ["exp", "sub", "aud", "iss"]
            .map(String::from)
            .into_iter()
            .collect();
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)
            .map_err(|e| e.to_string())?
            .claims;
        if claims.exp <= now {
            return Err("the token has expired".into());
        }
        if claims.nbf > now + 60 {
            return Err("the token is not valid yet".into());
        }
        if claims.sub
            != subject(
                &claims.kubernetes.namespace,
                &claims.kubernetes.serviceaccount.name,
            )
        {
            return Err("the token's subject is not its ServiceAccount".into());
        }
        Ok(claims)
    }
}

/// A lab's token issuer and CA certificate, read from its files once per
/// process (the API and the kubelet of the lab's process share them).
pub struct LabKeys {
    pub issuer: Issuer,
    pub ca: String,
}

pub fn for_lab(lab: &str) -> Option<std::sync::Arc<LabKeys>> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static KEYS: OnceLock<Mutex<HashMap<String, Arc<LabKeys>>>> = OnceLock::new();
    let mut keys = KEYS.get_or_init(Default::default).lock().ok()?;
    if let Some(k) = keys.get(lab) {
        return Some(k.clone());
    }
    let pki = super::pki::LabPki::read(&super::pki::dir(lab)).ok()?;
    let k = Arc::new(LabKeys {
        issuer: Issuer::new(&pki.sa_key)
            .inspect_err(|e| tracing::warn!(lab, error = %e, "tokens"))
            .ok()?,
        ca: pki.ca_cert,
    });
    keys.insert(lab.to_string(), k.clone());
    Some(k)
}

/// How long a Secret's token lasts: Kubernetes' never expire; these last a
/// century (the claims always carry `exp`), and end with their Secret.
pub const SECRET_SECONDS: i64 = 100 * 365 * 24 * 3600;

/// The token the token controller puts in a Secret of type
/// `kubernetes.io/service-account-token` (`cluster::secrets`).
pub fn for_secret(issuer: &Issuer, t: crate::cluster::secrets::TokenFor) -> String {
    let r = |(name, uid): (&str, &str)| Ref {
        name: name.into(),
        uid: uid.into(),
    };
    issuer
        .mint(&Grant {
            namespace: t.namespace.into(),
            service_account: r(t.account),
            pod: None,
            secret: Some(r(t.secret)),
            audiences: Vec::new(),
            issued: t.created,
            seconds: SECRET_SECONDS,
            warn_after: None,
            id: format!("{}-{}", t.secret.1, t.created),
        })
        .0
}

/// The token the kubelet writes in a pod's projected volume: bound to the
/// pod, issued when the pod was made (so the same bytes each time, until
/// a refresh is due at 80% of a short life), for a year when the kubelet's
/// default 3607 s was asked (kube-apiserver's extension).
pub fn for_pod(
    issuer: &Issuer,
    pod: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    account: &Ref,
    projection: &k8s_openapi::api::core::v1::ServiceAccountTokenProjection,
    now: i64,
) -> String {
    let created = pod
        .creation_timestamp
        .as_ref()
        .map_or(now, |t| t.0.timestamp());
    let asked = projection.expiration_seconds.unwrap_or(3600).max(600);
    let (seconds, issued) = if asked == KUBELET_SECONDS {
        (EXTENDED_SECONDS, created)
    } else {
        let period = (asked * 8 / 10).max(1);
        (asked, created + (now - created).max(0) / period * period)
    };
    let uid = pod.uid.clone().unwrap_or_default();
    issuer
        .mint(&Grant {
            namespace: pod.namespace.clone().unwrap_or_else(|| "default".into()),
            service_account: account.clone(),
            pod: Some(Ref {
                name: pod.name.clone().unwrap_or_default(),
                uid: uid.clone(),
            }),
            secret: None,
            audiences: projection.audience.iter().cloned().collect(),
            issued,
            seconds,
            warn_after: (asked == KUBELET_SECONDS).then_some(issued + KUBELET_SECONDS),
            id: format!("{uid}-{issued}"),
        })
        .0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(issued: i64, seconds: i64) -> Grant {
        Grant {
            namespace: "default".into(),
            service_account: Ref {
                name: "default".into(),
                uid: "u1".into(),
            },
            pod: Some(Ref {
                name: "p".into(),
                uid: "u2".into(),
            }),
            secret: None,
            audiences: vec![],
            issued,
            seconds,
            warn_after: Some(issued + KUBELET_SECONDS),
            id: "j".into(),
        }
    }

    fn issuer() -> Issuer {
        Issuer::new(&super::super::pki::generate("t", &[]).unwrap().sa_key).unwrap()
    }

    #[test]
    fn signed_checked_and_deterministic() {
        let i = issuer();
        let (t, exp) = i.mint(&grant(1000, 600));
        assert_eq!(exp, 1600);
        assert_eq!(
            t,
            i.mint(&grant(1000, 600)).0,
            "the same grant, the same bytes"
        );
        let c = i.verify(&t, 1001).unwrap();
        assert_eq!(c.sub, "system:serviceaccount:default:default");
        assert_eq!(c.aud, [ISSUER]);
        assert_eq!(c.kubernetes.pod.unwrap().uid, "u2");
        assert_eq!(c.kubernetes.serviceaccount.uid, "u1");
    }

    #[test]
    fn refused_expired_foreign_tampered_or_for_others() {
        let i = issuer();
        let (t, _) = i.mint(&grant(1000, 600));
        assert!(i.verify(&t, 1600).unwrap_err().contains("expired"));
        assert!(issuer().verify(&t, 1001).is_err(), "another lab's key");
        let mut parts: Vec<String> = t.split('.').map(String::from).collect();
        parts[1] = parts[1].replace('a', "b");
        assert!(i.verify(&parts.join("."), 1001).is_err());
        let mut other = grant(1000, 600);
        other.audiences = vec!["vault".into()];
        let (t, _) = i.mint(&other);
        assert!(i.verify(&t, 1001).is_err(), "not for the API");
        assert!(i.verify("not.a.token", 1001).is_err());
    }
}
