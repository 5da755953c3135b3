//! Who is calling and what they may do, as kube-apiserver decides it: a
//! ServiceAccount token (`tokens.rs`) names a user, whose requests RBAC
//! allows by the Roles and ClusterRoles bound to them (the lab's stored
//! objects, bootstrap policy included: `cluster::access`); the admin
//! certificate is `system:masters`, allowed everything before RBAC is
//! asked, as kube-apiserver's authorizer chain does.
//!
//! Also the requests that are answers rather than objects (dispatched by
//! `handler::answered`):
//! the access reviews (`kubectl auth can-i`), the rules review, the token
//! review, `SelfSubjectReview` (`kubectl auth whoami`) and a
//! ServiceAccount's `token` subresource (`kubectl create token`). Pure but
//! for the clock.

use super::request::{Route, Target};
use super::status::ApiError;
use super::tokens;
use crate::cluster::access::RBAC_GROUP;
use crate::cluster::state::namespace;
use crate::cluster::ClusterState;
use k8s_openapi::api::rbac::v1::{PolicyRule, Subject};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

/// A user as authentication names it (Kubernetes' `UserInfo`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct User {
    pub name: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    pub fn admin() -> User {
        User {
            name: super::pki::ADMIN_USER.into(),
            groups: vec![
                super::pki::ADMIN_GROUP.into(),
                "system:authenticated".into(),
            ],
            ..Default::default()
        }
    }

    pub fn service_account(ns: &str, name: &str) -> User {
        User {
            name: tokens::subject(ns, name),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
            ..Default::default()
        }
    }

    /// As Kubernetes' `UserInfo` JSON (what reviews answer with).
    pub fn info(&self) -> Value {
        let mut v = json!({"username": self.name, "groups": self.groups});
        if let Some(uid) = &self.uid {
            v["uid"] = uid.clone().into();
        }
        if !self.extra.is_empty() {
            v["extra"] = json!(self.extra);
        }
        v
    }

    fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == super::pki::ADMIN_GROUP)
    }
}

/// The user a `Bearer` token names, if the lab signed it for its API, it
/// has not expired, and its ServiceAccount (and the pod it is bound to)
/// still exist as they were when it was issued.
pub fn authenticate(
    issuer: &tokens::Issuer,
    st: &ClusterState,
    token: &str,
    now: i64,
) -> Result<User, String> {
    authenticate_for(issuer, st, token, now, &[tokens::ISSUER]).map(|(user, _)| user)
}

/// As `authenticate`, for a token meant for one of `audiences`; also the
/// token's audiences among them.
fn authenticate_for(
    issuer: &tokens::Issuer,
    st: &ClusterState,
    token: &str,
    now: i64,
    audiences: &[&str],
) -> Result<(User, Vec<String>), String> {
    let c = issuer.verify_for(token, now, audiences)?;
    let k = &c.kubernetes;
    let here = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, r: &tokens::Ref| {
        m.name.as_deref() == Some(r.name.as_str())
            && namespace(m) == k.namespace
            && m.uid.as_deref() == Some(r.uid.as_str())
    };
    if !st
        .service_accounts
        .iter()
        .any(|a| here(&a.metadata, &k.serviceaccount))
    {
        return Err(format!(
            "the ServiceAccount {}/{} of the token is gone",
            k.namespace, k.serviceaccount.name
        ));
    }
    if let Some(secret) = &k.secret {
        let kept = st.secrets.iter().any(|s| {
            here(&s.metadata, secret)
                && s.data
                    .as_ref()
                    .and_then(|d| d.get("token"))
                    .is_some_and(|t| t.0 == token.as_bytes())
        });
        if !kept {
            return Err(format!(
                "the Secret {}/{} of the token is gone",
                k.namespace, secret.name
            ));
        }
    }
    if let Some(pod) = &k.pod {
        if !st.pods.iter().any(|p| here(&p.metadata, pod)) {
            return Err(format!(
                "the pod {}/{} of the token is gone",
                k.namespace, pod.name
            ));
        }
    }
    // As kube-apiserver names a ServiceAccount token's user: the account's
    // uid, and the pod it is bound to in its extra fields.
    let mut user = User::service_account(&k.namespace, &k.serviceaccount.name);
    user.uid = Some(k.serviceaccount.uid.clone());
    if let Some(pod) = &k.pod {
        for (key, v) in [("pod-name", &pod.name), ("pod-uid", &pod.uid)] {
            user.extra.insert(
                format!("authentication.kubernetes.io/{key}"),
                vec![v.clone()],
            );
        }
    }
    let meant = c
        .aud
        .iter()
        .filter(|a| audiences.contains(&a.as_str()))
        .cloned()
        .collect();
    Ok((user, meant))
}

/// A TokenReview (authentication.k8s.io/v1), as a webhook or an
/// auth proxy in a pod asks it: who the token is, for the API's audience
/// unless `spec.audiences` names others (201, not stored).
pub fn token_review(
    issuer: &tokens::Issuer,
    st: &ClusterState,
    body: &Value,
    now: i64,
) -> (u16, Value) {
    let spec = &body["spec"];
    let asked: Vec<&str> = spec["audiences"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let audiences = if asked.is_empty() {
        vec![tokens::ISSUER]
    } else {
        asked
    };
    let token = spec["token"].as_str().unwrap_or_default();
    let status = match authenticate_for(issuer, st, token, now, &audiences) {
        Ok((user, meant)) => json!({
            "authenticated": true,
            "user": user.info(),
            "audiences": meant,
        }),
        Err(why) => json!({"user": {}, "error": why}),
    };
    (
        201,
        json!({
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": spec,
            "status": status,
        }),
    )
}

/// A SelfSubjectReview (authentication.k8s.io/v1, `kubectl auth whoami`):
/// who the caller is, as authentication (and impersonation) made them.
pub fn self_subject_review(user: &User) -> (u16, Value) {
    (
        201,
        json!({
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": user.info()},
        }),
    )
}

/// What a request asks to act as (`kubectl --as`, `--as-group`,
/// `--as-uid`, a kubeconfig's `as-user-extra`): the `Impersonate-User`,
/// `-Group`, `-Uid` and `-Extra-KEY` headers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Impersonation {
    pub user: Option<String>,
    pub groups: Vec<String>,
    pub uid: Option<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The user a request acts as: `caller`, or whom it impersonates when the
/// caller may `impersonate` them (kube-apiserver's impersonation filter: the
/// user, or the ServiceAccount its name is, then each group). The
/// impersonated user is `system:authenticated`, and a ServiceAccount's
/// name brings its groups when none are asked.
pub fn impersonate(
    st: &ClusterState,
    caller: User,
    asked: Impersonation,
) -> Result<User, ApiError> {
    let Some(name) = asked.user else {
        if asked.groups.is_empty() && asked.uid.is_none() && asked.extra.is_empty() {
            return Ok(caller);
        }
        return Err(ApiError::internal(format!(
            "requested {} without impersonating a user",
            if asked.groups.is_empty() {
                "a uid or extra fields".to_string()
            } else {
                format!("groups {:?}", asked.groups)
            }
        )));
    };
    let may = |group: &str, resource: &str, sub: Option<&str>, ns: Option<&str>, name: &str| {
        let a = Attributes {
            verb: "impersonate".into(),
            resource: Some(Resource {
                group: group.into(),
                resource: resource.into(),
                subresource: sub.map(String::from),
                namespace: ns.map(String::from),
                name: Some(name.into()),
            }),
            path: String::new(),
        };
        match decide(st, &caller, &a) {
            Some(_) => Ok(()),
            None => Err(forbidden(&caller, &a)),
        }
    };
    let account = name
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'));
    match account {
        Some((ns, sa)) => may("", "serviceaccounts", None, Some(ns), sa)?,
        None => may("", "users", None, None, &name)?,
    }
    for g in &asked.groups {
        may("", "groups", None, None, g)?;
    }
    // A uid and extra fields are checked in authentication.k8s.io, each
    // extra value as the name of `userextras/KEY`.
    if let Some(uid) = &asked.uid {
        may("authentication.k8s.io", "uids", None, None, uid)?;
    }
    for (key, values) in &asked.extra {
        for v in values {
            may("authentication.k8s.io", "userextras", Some(key), None, v)?;
        }
    }
    let mut user = match account {
        Some((ns, sa)) if asked.groups.is_empty() => User::service_account(ns, sa),
        _ => User {
            name,
            groups: asked.groups,
            ..Default::default()
        },
    };
    user.uid = asked.uid;
    user.extra = asked.extra;
    if !user.groups.iter().any(|g| g == "system:authenticated") {
        user.groups.push("system:authenticated".into());
    }
    Ok(user)
}

/// What a request asks to do, in RBAC's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Attributes {
    pub verb: String,
    /// None: a non-resource request, of `path`.
    pub resource: Option<Resource>,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub group: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// kube-apiserver's RequestInfo: the verb of a method on a path.
pub fn attributes(
    route: &Route,
    method: &hyper::Method,
    path: &str,
    q: &HashMap<String, String>,
) -> Attributes {
    let Route::Object(t) = route else {
        return Attributes {
            verb: method.as_str().to_lowercase(),
            resource: None,
            path: path.to_string(),
        };
    };
    let sub = t.subresource.clone();
    let stream = matches!(sub.as_deref(), Some("exec" | "attach" | "portforward"));
    let verb = match *method {
        // A stream's upgrade is a create whatever its method (kube-apiserver
        // 1.31's check of WebSocket exec).
        _ if stream => "create",
        hyper::Method::GET if super::request::flag(q, "watch") => "watch",
        hyper::Method::GET if t.name.is_some() => "get",
        hyper::Method::GET => "list",
        hyper::Method::POST => "create",
        hyper::Method::PUT => "update",
        hyper::Method::PATCH => "patch",
        hyper::Method::DELETE if t.name.is_some() => "delete",
        hyper::Method::DELETE => "deletecollection",
        _ => "unknown",
    };
    Attributes {
        verb: verb.into(),
        resource: Some(of_target(t, sub)),
        path: path.to_string(),
    }
}

fn of_target(t: &Target, subresource: Option<String>) -> Resource {
    Resource {
        group: t.resource.group.into(),
        resource: t.resource.plural.into(),
        subresource,
        namespace: t.namespace.clone(),
        name: t.name.clone(),
    }
}

fn has(list: &[String], v: &str) -> bool {
    list.iter().any(|x| x == "*" || x == v)
}

fn rule_allows(r: &PolicyRule, a: &Attributes) -> bool {
    if !has(&r.verbs, &a.verb) {
        return false;
    }
    match &a.resource {
        Some(res) => {
            let groups = r.api_groups.as_deref().unwrap_or_default();
            let resources = r.resources.as_deref().unwrap_or_default();
            let names = r.resource_names.as_deref().unwrap_or_default();
            let combined = match &res.subresource {
                Some(s) => format!("{}/{s}", res.resource),
                None => res.resource.clone(),
            };
            let resource_ok = resources.iter().any(|x| {
                x == "*"
                    || *x == combined
                    || res.subresource.as_ref().is_some_and(|s| {
                        *x == format!("*/{s}") || *x == format!("{}/*", res.resource)
                    })
            });
            has(groups, &res.group)
                && resource_ok
                && (names.is_empty() || res.name.as_ref().is_some_and(|n| names.contains(n)))
        }
        None => r.non_resource_urls.iter().flatten().any(|u| {
            u == "*" || *u == a.path || u.strip_suffix('*').is_some_and(|p| a.path.starts_with(p))
        }),
    }
}

fn subject_is(s: &Subject, user: &User, binding_ns: Option<&str>) -> bool {
    match s.kind.as_str() {
        "User" => s.name == user.name,
        "Group" => user.groups.contains(&s.name),
        "ServiceAccount" => {
            let ns = s
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .or(binding_ns);
            ns.is_some_and(|ns| user.name == tokens::subject(ns, &s.name))
        }
        _ => false,
    }
}

fn describe(s: &Subject, binding_ns: Option<&str>) -> String {
    match (s.kind.as_str(), s.namespace.as_deref().or(binding_ns)) {
        ("ServiceAccount", Some(ns)) => format!("ServiceAccount \"{}/{ns}\"", s.name),
        (k, _) => format!("{k} \"{}\"", s.name),
    }
}

/// The rules a binding's roleRef grants: a ClusterRole's, or (for a
/// RoleBinding in `ns`) a Role's of that namespace.
fn granted(
    st: &ClusterState,
    role: &k8s_openapi::api::rbac::v1::RoleRef,
    ns: Option<&str>,
) -> Vec<PolicyRule> {
    let rules = match (role.kind.as_str(), ns) {
        ("ClusterRole", _) => st
            .cluster_roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(role.name.as_str()))
            .and_then(|r| r.rules.clone()),
        ("Role", Some(ns)) => st
            .roles
            .iter()
            .find(|r| {
                r.metadata.name.as_deref() == Some(role.name.as_str())
                    && namespace(&r.metadata) == ns
            })
            .and_then(|r| r.rules.clone()),
        _ => None,
    };
    rules.unwrap_or_default()
}

/// Whether `user` may: kube-apiserver's reason if so (empty for
/// `system:masters`), else None.
pub fn decide(st: &ClusterState, user: &User, a: &Attributes) -> Option<String> {
    if user.is_master() {
        return Some(String::new());
    }
    for b in st.cluster_role_bindings.iter() {
        if b.role_ref.kind != "ClusterRole" || b.role_ref.api_group != RBAC_GROUP {
            continue;
        }
        let Some(s) = b
            .subjects
            .iter()
            .flatten()
            .find(|s| subject_is(s, user, None))
        else {
            continue;
        };
        if granted(st, &b.role_ref, None)
            .iter()
            .any(|r| rule_allows(r, a))
        {
            return Some(format!(
                "RBAC: allowed by ClusterRoleBinding \"{}\" of ClusterRole \"{}\" to {}",
                b.metadata.name.as_deref().unwrap_or_default(),
                b.role_ref.name,
                describe(s, None)
            ));
        }
    }
    let ns = a.resource.as_ref().and_then(|r| r.namespace.as_deref())?;
    for b in st
        .role_bindings
        .iter()
        .filter(|b| namespace(&b.metadata) == ns)
    {
        let Some(s) = b
            .subjects
            .iter()
            .flatten()
            .find(|s| subject_is(s, user, Some(ns)))
        else {
            continue;
        };
        if granted(st, &b.role_ref, Some(ns))
            .iter()
            .any(|r| rule_allows(r, a))
        {
            return Some(format!(
                "RBAC: allowed by RoleBinding \"{}/{ns}\" of {} \"{}\" to {}",
                b.metadata.name.as_deref().unwrap_or_default(),
                b.role_ref.kind,
                b.role_ref.name,
                describe(s, Some(ns))
            ));
        }
    }
    None
}

/// kube-apiserver's 403.
pub fn forbidden(user: &User, a: &Attributes) -> ApiError {
    let Some(r) = &a.resource else {
        return ApiError::new(
            403,
            "Forbidden",
            format!(
                "forbidden: User \"{}\" cannot {} path \"{}\"",
                user.name, a.verb, a.path
            ),
        );
    };
    let qualified = match r.group.as_str() {
        "" => r.resource.clone(),
        g => format!("{}.{g}", r.resource),
    };
    let what = match &r.subresource {
        Some(s) => format!("{}/{s}", r.resource),
        None => r.resource.clone(),
    };
    let scope = match &r.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".into(),
    };
    let object = match &r.name {
        Some(n) => format!("{qualified} \"{n}\""),
        None => qualified,
    };
    ApiError {
        details: match &r.name {
            Some(n) => json!({"name": n, "group": r.group, "kind": r.resource}),
            None => json!({"group": r.group, "kind": r.resource}),
        },
        ..ApiError::new(
            403,
            "Forbidden",
            format!(
                "{object} is forbidden: User \"{}\" cannot {} resource \"{what}\" in API group \"{}\" {scope}",
                user.name, a.verb, r.group
            ),
        )
    }
}

/// A SubjectAccessReview: may the user `spec.user` (in `spec.groups`) do
/// this? Answered as `review` is for the caller (201, not stored).
pub fn subject_review(st: &ClusterState, body: &Value) -> Result<(u16, Value), ApiError> {
    subject_review_in(st, body, None)
}

/// A LocalSubjectAccessReview: a SubjectAccessReview within the namespace
/// `ns` of its path (its resourceAttributes' namespace, if set, must be it).
pub fn local_subject_review(
    st: &ClusterState,
    body: &Value,
    ns: &str,
) -> Result<(u16, Value), ApiError> {
    subject_review_in(st, body, Some(ns))
}

fn subject_review_in(
    st: &ClusterState,
    body: &Value,
    local: Option<&str>,
) -> Result<(u16, Value), ApiError> {
    let kind = if local.is_some() {
        "LocalSubjectAccessReview"
    } else {
        "SubjectAccessReview"
    };
    let mut body = body.clone();
    if let Some(ns) = local {
        let attrs = &mut body["spec"]["resourceAttributes"];
        match attrs["namespace"].as_str().filter(|n| !n.is_empty()) {
            Some(n) if n != ns => {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!("{kind}.authorization.k8s.io \"\" is invalid: spec.resourceAttributes.namespace: Invalid value: \"{n}\": must match metadata.namespace"),
                ))
            }
            _ if attrs.is_object() => attrs["namespace"] = ns.into(),
            _ => {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!("{kind}.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: Required value: disallowed on this kind of request"),
                ))
            }
        }
    }
    let spec = &body["spec"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let user = User {
        name: text(&spec["user"]),
        uid: spec["uid"].as_str().map(String::from),
        groups: spec["groups"]
            .as_array()
            .map(|g| g.iter().map(text).collect())
            .unwrap_or_default(),
        extra: serde_json::from_value(spec["extra"].clone()).unwrap_or_default(),
    };
    if user.name.is_empty() && user.groups.is_empty() {
        return Err(ApiError {
            details: json!({"kind": kind, "group": "authorization.k8s.io",
                            "causes": [{"reason": "FieldValueRequired", "field": "spec.user",
                                        "message": "Required value: at least one of user or group must be specified"}]}),
            ..ApiError::new(422, "Invalid", format!("{kind}.authorization.k8s.io \"\" is invalid: spec.user: Required value: at least one of user or group must be specified"))
        });
    }
    let (code, mut v) = review(st, &user, &body)?;
    v["kind"] = kind.into();
    if let Some(ns) = local {
        v["metadata"]["namespace"] = ns.into();
    }
    Ok((code, v))
}

/// A SelfSubjectAccessReview, answered for the caller (201, not stored).
pub fn review(st: &ClusterState, user: &User, body: &Value) -> Result<(u16, Value), ApiError> {
    let spec = &body["spec"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let attrs = if let Some(r) = spec["resourceAttributes"].as_object() {
        let opt = |k: &str| {
            r.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(String::from)
        };
        Attributes {
            verb: opt("verb").unwrap_or_default(),
            resource: Some(Resource {
                group: opt("group").unwrap_or_default(),
                resource: opt("resource").unwrap_or_default(),
                subresource: opt("subresource"),
                namespace: opt("namespace"),
                name: opt("name"),
            }),
            path: String::new(),
        }
    } else if spec["nonResourceAttributes"].is_object() {
        let n = &spec["nonResourceAttributes"];
        Attributes {
            verb: text(&n["verb"]),
            resource: None,
            path: text(&n["path"]),
        }
    } else {
        return Err(ApiError {
            details: json!({"kind": "SelfSubjectAccessReview", "group": "authorization.k8s.io",
                            "causes": [{"reason": "FieldValueRequired", "field": "spec.resourceAttributes",
                                        "message": "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified"}]}),
            ..ApiError::new(422, "Invalid", "SelfSubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified")
        });
    };
    let status = match decide(st, user, &attrs) {
        Some(reason) if reason.is_empty() => json!({"allowed": true}),
        Some(reason) => json!({"allowed": true, "reason": reason}),
        None => json!({"allowed": false}),
    };
    Ok((
        201,
        json!({
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": spec,
            "status": status,
        }),
    ))
}

/// The rules of every binding that names `user`: the cluster's, and in
/// `ns` its namespace's.
fn rules_of(st: &ClusterState, user: &User, ns: &str) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    for b in st.cluster_role_bindings.iter() {
        if b.subjects
            .iter()
            .flatten()
            .any(|s| subject_is(s, user, None))
        {
            out.extend(granted(st, &b.role_ref, None));
        }
    }
    for b in st
        .role_bindings
        .iter()
        .filter(|b| namespace(&b.metadata) == ns)
    {
        if !b
            .subjects
            .iter()
            .flatten()
            .any(|s| subject_is(s, user, Some(ns)))
        {
            continue;
        }
        out.extend(granted(st, &b.role_ref, Some(ns)));
    }
    out
}

/// A SelfSubjectRulesReview (`kubectl auth can-i --list`): what the caller
/// may do in `spec.namespace`.
pub fn rules_review(st: &ClusterState, user: &User, body: &Value) -> (u16, Value) {
    let ns = body["spec"]["namespace"].as_str().unwrap_or("default");
    let own = |l: &Option<Vec<String>>| json!(l.clone().unwrap_or_default());
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for r in rules_of(st, user, ns) {
        if r.non_resource_urls.as_ref().is_some_and(|u| !u.is_empty()) {
            non_resource_rules
                .push(json!({"verbs": r.verbs, "nonResourceURLs": own(&r.non_resource_urls)}));
        } else {
            let mut v = json!({"verbs": r.verbs, "apiGroups": own(&r.api_groups), "resources": own(&r.resources)});
            if r.resource_names.as_ref().is_some_and(|n| !n.is_empty()) {
                v["resourceNames"] = own(&r.resource_names);
            }
            resource_rules.push(v);
        }
    }
    (
        201,
        json!({
            "kind": "SelfSubjectRulesReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": {"namespace": ns},
            "status": {"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false},
        }),
    )
}

/// A ServiceAccount's `token` subresource: a TokenRequest answered with a
/// new token (201), for the API's audience unless others are asked, for
/// `expirationSeconds` (default an hour, at least ten minutes), bound to a
/// pod if `boundObjectRef` names one.
pub fn token_request(
    issuer: &tokens::Issuer,
    st: &ClusterState,
    t: &Target,
    body: &Value,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(u16, Value), ApiError> {
    let ns = t.namespace.clone().unwrap_or_else(|| "default".into());
    let name = t.name.clone().unwrap_or_default();
    let account = st
        .service_accounts
        .iter()
        .find(|a| a.metadata.name.as_deref() == Some(name.as_str()) && namespace(&a.metadata) == ns)
        .ok_or_else(|| ApiError::not_found("serviceaccounts", &name))?;
    let spec = &body["spec"];
    let seconds = spec["expirationSeconds"].as_i64().unwrap_or(3600);
    let invalid = |m: String| {
        ApiError {
        details: json!({"name": name, "kind": "TokenRequest", "group": "authentication.k8s.io",
                        "causes": [{"reason": "FieldValueInvalid", "message": m, "field": "spec.expirationSeconds"}]}),
        ..ApiError::new(422, "Invalid", format!("TokenRequest.authentication.k8s.io \"{name}\" is invalid: spec.expirationSeconds: Invalid value: {seconds}: {m}"))
    }
    };
    if seconds < 600 {
        return Err(invalid(
            "may not specify a duration less than 10 minutes".into(),
        ));
    }
    if seconds > 1 << 32 {
        return Err(invalid(
            "may not specify a duration larger than 2^32 seconds".into(),
        ));
    }
    let audiences: Vec<String> = spec["audiences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(String::from))
        .collect();
    let bound = &spec["boundObjectRef"];
    let pod = match bound["kind"].as_str() {
        None | Some("") => None,
        Some("Pod") => {
            let pod_name = bound["name"].as_str().unwrap_or_default();
            let p = st
                .pods
                .iter()
                .find(|p| {
                    p.metadata.name.as_deref() == Some(pod_name) && namespace(&p.metadata) == ns
                })
                .ok_or_else(|| ApiError::not_found("pods", pod_name))?;
            Some(tokens::Ref {
                name: pod_name.into(),
                uid: p.metadata.uid.clone().unwrap_or_default(),
            })
        }
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "cannot bind a token to a {k} here (netlab binds them to pods)"
            )))
        }
    };
    let (token, exp) = issuer.mint(&tokens::Grant {
        namespace: ns.clone(),
        service_account: tokens::Ref {
            name: name.clone(),
            uid: account.metadata.uid.clone().unwrap_or_default(),
        },
        pod: pod.clone(),
        secret: None,
        audiences: audiences.clone(),
        issued: now.timestamp(),
        seconds,
        warn_after: None,
        id: crate::cluster::state::uid(&mut rand::rng()),
    });
    let stamp = |s: i64| {
        chrono::DateTime::from_timestamp(s, 0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    Ok((
        201,
        json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": stamp(now.timestamp())},
            "spec": {
                "audiences": if audiences.is_empty() { vec![tokens::ISSUER.to_string()] } else { audiences },
                "expirationSeconds": seconds,
                "boundObjectRef": if pod.is_some() { bound.clone() } else { Value::Null },
            },
            "status": {"token": token, "expirationTimestamp": stamp(exp)},
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> ClusterState {
        let mut st = ClusterState::empty();
        crate::cluster::access::ensure(&mut st, None, chrono::Utc::now(), &mut rand::rng());
        st
    }

    fn res(verb: &str, resource: &str, sub: Option<&str>, ns: Option<&str>) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource: Some(Resource {
                group: String::new(),
                resource: resource.into(),
                subresource: sub.map(String::from),
                namespace: ns.map(String::from),
                name: None,
            }),
            path: String::new(),
        }
    }

    fn bind(st: &mut ClusterState, yaml: &str) {
        st.role_bindings
            .push(serde_yaml_ng::from_str(yaml).unwrap());
    }

    #[test]
    fn impersonation_needs_the_impersonate_verb_and_names_the_user() {
        let st = lab();
        let as_ = |user: &str, groups: &[&str]| Impersonation {
            user: Some(user.into()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        };
        // The admin (system:masters) may be anyone.
        let jane = impersonate(&st, User::admin(), as_("jane", &["devs"])).unwrap();
        assert_eq!(jane.name, "jane");
        assert_eq!(jane.groups, ["devs", "system:authenticated"]);
        assert!(decide(&st, &jane, &res("list", "pods", None, Some("default"))).is_none());
        // A ServiceAccount's name brings its groups.
        let sa = impersonate(
            &st,
            User::admin(),
            as_("system:serviceaccount:web:robot", &[]),
        )
        .unwrap();
        assert_eq!(sa, User::service_account("web", "robot"));
        // A ServiceAccount may not impersonate without a grant.
        let e = impersonate(&st, sa.clone(), as_("jane", &[])).unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "users \"jane\" is forbidden: User \"system:serviceaccount:web:robot\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
        );
        // Groups without a user are refused; neither is no impersonation.
        assert_eq!(
            impersonate(
                &st,
                sa.clone(),
                Impersonation {
                    user: None,
                    groups: vec!["g".into()],
                    ..Default::default()
                }
            )
            .unwrap_err()
            .code,
            500
        );
        assert_eq!(
            impersonate(&st, sa.clone(), Impersonation::default()).unwrap(),
            sa
        );
        // A uid and extra fields (`--as-uid`), and `kubectl auth whoami`.
        let asked = Impersonation {
            uid: Some("1234".into()),
            extra: [("scopes".to_string(), vec!["view".to_string()])].into(),
            ..as_("jane", &["devs"])
        };
        let jane = impersonate(&st, User::admin(), asked.clone()).unwrap();
        assert_eq!(jane.uid.as_deref(), Some("1234"));
        let (code, review) = self_subject_review(&jane);
        assert_eq!(code, 201);
        assert_eq!(
            review["status"]["userInfo"],
            json!({"username": "jane", "uid": "1234",
                   "groups": ["devs", "system:authenticated"],
                   "extra": {"scopes": ["view"]}})
        );
        // Each needs its own grant: `uids` and `userextras/KEY` in
        // authentication.k8s.io.
        let e = impersonate(
            &st,
            sa.clone(),
            Impersonation {
                user: None,
                ..asked
            },
        )
        .unwrap_err();
        assert_eq!(e.code, 500, "a uid without a user");
    }

    #[test]
    fn a_service_account_may_discover_and_nothing_else_until_bound() {
        let mut st = lab();
        let sa = User::service_account("default", "default");
        let path = |p: &str| Attributes {
            verb: "get".into(),
            resource: None,
            path: p.into(),
        };
        assert!(decide(&st, &sa, &path("/api")).is_some());
        assert!(decide(&st, &sa, &path("/apis/apps/v1")).is_some());
        assert!(decide(&st, &sa, &path("/metrics")).is_none());
        let list = res("list", "pods", None, Some("default"));
        assert!(decide(&st, &sa, &list).is_none());
        assert_eq!(
            forbidden(&sa, &list).message,
            "pods is forbidden: User \"system:serviceaccount:default:default\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        bind(&mut st, "metadata: {name: v, namespace: default}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}\nsubjects: [{kind: ServiceAccount, name: default, namespace: default}]\n");
        let why = decide(&st, &sa, &list).unwrap();
        assert!(
            why.contains("RoleBinding \"v/default\" of ClusterRole \"view\""),
            "{why}"
        );
        assert!(decide(&st, &sa, &res("list", "pods", None, Some("other"))).is_none());
        assert!(decide(
            &st,
            &sa,
            &res("create", "pods", Some("exec"), Some("default"))
        )
        .is_none());
        assert!(decide(&st, &sa, &res("get", "pods", Some("log"), Some("default"))).is_some());
        assert!(decide(&st, &User::admin(), &res("delete", "nodes", None, None)).is_some());
        let (_, rules) = rules_review(&st, &sa, &json!({"spec": {"namespace": "default"}}));
        let text = rules["status"].to_string();
        assert!(
            text.contains("\"/api/*\"") && text.contains("\"pods/log\""),
            "{text}"
        );
        let (_, rules) = rules_review(&st, &sa, &json!({"spec": {"namespace": "other"}}));
        assert!(!rules["status"].to_string().contains("pods/log"));
    }

    #[test]
    fn rules_match_as_kubernetes_matches_them() {
        let rule: PolicyRule = serde_yaml_ng::from_str("apiGroups: ['']\nresources: ['pods/*', '*/scale']\nverbs: [create]\nresourceNames: [p1]\n").unwrap();
        let mut a = res("create", "pods", Some("exec"), Some("d"));
        assert!(
            !rule_allows(&rule, &a),
            "a name is required by resourceNames"
        );
        a.resource.as_mut().unwrap().name = Some("p1".into());
        assert!(rule_allows(&rule, &a));
        let mut scale = res("create", "deployments", Some("scale"), Some("d"));
        scale.resource.as_mut().unwrap().name = Some("p1".into());
        assert!(rule_allows(&rule, &scale));
        a.verb = "get".into();
        assert!(!rule_allows(&rule, &a));
    }

    #[test]
    fn tokens_of_gone_accounts_and_pods_are_refused() {
        let mut st = lab();
        let issuer =
            tokens::Issuer::new(&super::super::pki::generate("t", &[]).unwrap().sa_key).unwrap();
        let sa = st
            .service_accounts
            .iter()
            .find(|a| namespace(&a.metadata) == "default")
            .unwrap()
            .clone();
        let grant = tokens::Grant {
            namespace: "default".into(),
            service_account: tokens::Ref {
                name: "default".into(),
                uid: sa.metadata.uid.clone().unwrap(),
            },
            pod: None,
            secret: None,
            audiences: vec![],
            issued: 1000,
            seconds: 3600,
            warn_after: None,
            id: "x".into(),
        };
        let (t, _) = issuer.mint(&grant);
        assert_eq!(
            authenticate(&issuer, &st, &t, 1001).unwrap(),
            User {
                uid: sa.metadata.uid.clone(),
                ..User::service_account("default", "default")
            }
        );
        // A TokenReview says the same, for the API's audience only.
        let (_, v) = token_review(&issuer, &st, &json!({"spec": {"token": t}}), 1001);
        assert_eq!(v["status"]["authenticated"], true);
        assert_eq!(
            v["status"]["user"]["username"],
            "system:serviceaccount:default:default"
        );
        assert_eq!(v["status"]["audiences"], json!([tokens::ISSUER]));
        let other = json!({"spec": {"token": t, "audiences": ["vault"]}});
        let (_, v) = token_review(&issuer, &st, &other, 1001);
        assert_eq!(v["status"]["authenticated"], Value::Null);
        assert!(
            v["status"]["error"].as_str().unwrap().contains("udience"),
            "{v}"
        );
        // A SubjectAccessReview asks for someone else.
        let sar = json!({"spec": {"user": "system:serviceaccount:default:default",
            "resourceAttributes": {"verb": "list", "resource": "pods", "namespace": "default"}}});
        let (_, v) = subject_review(&st, &sar).unwrap();
        assert_eq!(
            (v["kind"].as_str(), &v["status"]["allowed"]),
            (Some("SubjectAccessReview"), &json!(false))
        );
        let admin = json!({"spec": {"groups": ["system:masters"],
            "resourceAttributes": {"verb": "list", "resource": "pods"}}});
        assert_eq!(
            subject_review(&st, &admin).unwrap().1["status"]["allowed"],
            true
        );
        assert_eq!(
            subject_review(&st, &json!({"spec": {}})).unwrap_err().code,
            422
        );
        let (_, v) = local_subject_review(&st, &admin, "web").unwrap();
        assert_eq!(v["spec"]["resourceAttributes"]["namespace"], "web");
        assert_eq!(v["kind"], "LocalSubjectAccessReview");
        assert_eq!(
            local_subject_review(&st, &sar, "web").unwrap_err().code,
            422
        );
        let (bound, _) = issuer.mint(&tokens::Grant {
            pod: Some(tokens::Ref {
                name: "p".into(),
                uid: "u".into(),
            }),
            ..grant.clone()
        });
        assert!(authenticate(&issuer, &st, &bound, 1001)
            .unwrap_err()
            .contains("pod"));
        // A token kept in a Secret works while the Secret holds it.
        let kept = |uid: &str| tokens::Grant {
            secret: Some(tokens::Ref {
                name: "keep".into(),
                uid: uid.into(),
            }),
            ..grant.clone()
        };
        let (in_secret, _) = issuer.mint(&kept("s1"));
        assert!(authenticate(&issuer, &st, &in_secret, 1001)
            .unwrap_err()
            .contains("Secret"));
        st.secrets.push(k8s_openapi::api::core::v1::Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("keep".into()),
                namespace: Some("default".into()),
                uid: Some("s1".into()),
                ..Default::default()
            },
            data: Some(
                [(
                    "token".to_string(),
                    k8s_openapi::ByteString(in_secret.clone().into_bytes()),
                )]
                .into(),
            ),
            ..Default::default()
        });
        assert!(authenticate(&issuer, &st, &in_secret, 1001).is_ok());
        let (other_secret, _) = issuer.mint(&kept("s2"));
        assert!(
            authenticate(&issuer, &st, &other_secret, 1001).is_err(),
            "a Secret of the same name made again"
        );
        st.service_accounts
            .retain(|a| namespace(&a.metadata) != "default");
        assert!(authenticate(&issuer, &st, &t, 1001).is_err());
        crate::cluster::access::ensure(&mut st, None, chrono::Utc::now(), &mut rand::rng());
        assert!(
            authenticate(&issuer, &st, &t, 1001).is_err(),
            "a new default account is another account"
        );
    }
}
