//! What a request asks for, from its path and query, as kube-apiserver's
//! `RequestInfoFactory` reads them. Pure.

use super::resources::{self, Resource};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// `/version`, `/healthz`, `/livez`, `/readyz` (and their `/...` checks).
    Version,
    Health,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/api/v1`, `/apis/<group>/<version>`
    Resources {
        group: String,
        version: String,
    },
    /// `/openapi/v2`, `/openapi/v3[/...]`
    OpenApi,
    /// A resource, a named object or a subresource.
    Object(Target),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub resource: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RouteError {
    /// A path no route takes (kube-apiserver answers 404 with a Status).
    NotFound(String),
    /// A known group/version without that resource: `the server could not
    /// find the requested resource`.
    NoResource {
        group_version: String,
        plural: String,
    },
}

/// Routes a request path (without the query).
pub fn route(path: &str) -> Result<Route, RouteError> {
    let segs: Vec<&str> = path
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let nf = || RouteError::NotFound(path.to_string());
    match segs.as_slice() {
        ["version"] => Ok(Route::Version),
        [h, ..] if ["healthz", "livez", "readyz"].contains(h) => Ok(Route::Health),
        ["openapi", ..] => Ok(Route::OpenApi),
        ["api"] => Ok(Route::CoreVersions),
        ["apis"] => Ok(Route::Groups),
        ["api", "v1"] => Ok(Route::Resources {
            group: String::new(),
            version: "v1".into(),
        }),
        ["apis", g, v] => {
            if resources::in_group(g, v).next().is_none() {
                return Err(nf());
            }
            Ok(Route::Resources {
                group: g.to_string(),
                version: v.to_string(),
            })
        }
        ["api", "v1", rest @ ..] => object("", "v1", rest).map(Route::Object),
        ["apis", g, v, rest @ ..] => {
            if resources::in_group(g, v).next().is_none() {
                return Err(nf());
            }
            object(g, v, rest).map(Route::Object)
        }
        _ => Err(nf()),
    }
}

fn object(group: &str, version: &str, rest: &[&str]) -> Result<Target, RouteError> {
    // `namespaces/NS/<resource>...` is namespaced; `namespaces[/NAME[/status]]`
    // is the Namespace resource itself.
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..] if group.is_empty() || !plural.is_empty() => {
            match (group, *plural) {
                ("", "status") | ("", "finalize") if tail.is_empty() => (None, rest),
                _ => (Some(ns.to_string()), &rest[2..]),
            }
        }
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(n.to_string()), None),
        [p, n, s] => (*p, Some(n.to_string()), Some(s.to_string())),
        _ => return Err(RouteError::NotFound(format!("/{}", rest.join("/")))),
    };
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let resource = resources::find(group, version, plural).ok_or(RouteError::NoResource {
        group_version: gv,
        plural: plural.to_string(),
    })?;
    if namespace.is_some() && !resource.namespaced {
        return Err(RouteError::NotFound(format!("/{}", rest.join("/"))));
    }
    if let Some(s) = &sub {
        if !resource.subresources.iter().any(|(n, _, _)| n == s) {
            return Err(RouteError::NotFound(format!("/{}", rest.join("/"))));
        }
    }
    Ok(Target {
        resource,
        namespace,
        name,
        subresource: sub,
    })
}

/// A query string's parameters, percent-decoded (`+` is a space).
pub fn query(q: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(decode(k), decode(v));
    }
    out
}

/// Every value of a repeated query parameter, in order (`exec`'s
/// `command=sh&command=-c&command=…`).
pub fn query_all(q: Option<&str>, key: &str) -> Vec<String> {
    q.unwrap_or("")
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k) == key).then(|| decode(v))
        })
        .collect()
}

/// A boolean query parameter as kube-apiserver converts it
/// (`Convert_Slice_string_To_bool`): absent is false, `0` and `false` (in
/// any case) are false, anything else is true, even an empty value.
/// client-go sends `watch=true`; the Python client sends `watch=True`.
pub fn flag(q: &HashMap<String, String>, key: &str) -> bool {
    q.get(key)
        .is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// A query's percent-encoded text (`+` is a space).
pub fn decode(s: &str) -> String {
    percent_decoded(s, true)
}

/// A path-style percent-encoded text (Go's `url.PathUnescape`: `+` is
/// itself), as an `Impersonate-Extra-` key is.
pub fn unescape(s: &str) -> String {
    percent_decoded(s, false)
}

fn percent_decoded(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 3 <= b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A field selector as kube-apiserver takes it: `a=b,c!=d` (`==` too).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldSelector(pub Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(s: &str, allowed: &[&str]) -> Result<FieldSelector, String> {
        let mut out = Vec::new();
        for term in s.split(',').filter(|t| !t.trim().is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                ));
            };
            let field = field.trim();
            if !allowed.contains(&field) {
                return Err(format!("field label not supported: {field}"));
            }
            out.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector(out))
    }

    /// Whether an object (as JSON) matches: each field is looked up by its
    /// dotted path (`involvedObject.name` → `["involvedObject"]["name"]`).
    pub fn matches(&self, object: &serde_json::Value) -> bool {
        self.0.iter().all(|(field, equal, want)| {
            let mut v = object;
            for part in field.split('.') {
                v = &v[part];
            }
            let got = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            (got == *want) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Target {
        match route(path).unwrap() {
            Route::Object(t) => t,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn paths_route_as_kube_apiserver_reads_them() {
        let t = target("/api/v1/namespaces/default/pods");
        assert_eq!(
            (
                t.resource.plural,
                t.namespace.as_deref(),
                t.name,
                t.subresource
            ),
            ("pods", Some("default"), None, None)
        );
        let t = target("/api/v1/namespaces/default/pods/p/log");
        assert_eq!(
            (t.name.as_deref(), t.subresource.as_deref()),
            (Some("p"), Some("log"))
        );
        let t = target("/api/v1/pods");
        assert_eq!((t.resource.plural, t.namespace), ("pods", None));
        let t = target("/api/v1/namespaces");
        assert_eq!((t.resource.plural, t.name), ("namespaces", None));
        let t = target("/api/v1/namespaces/kube-system");
        assert_eq!(
            (t.resource.plural, t.name.as_deref()),
            ("namespaces", Some("kube-system"))
        );
        let t = target("/api/v1/namespaces/x/status");
        assert_eq!(
            (
                t.resource.plural,
                t.name.as_deref(),
                t.subresource.as_deref()
            ),
            ("namespaces", Some("x"), Some("status"))
        );
        let t = target("/apis/apps/v1/namespaces/default/deployments/my-nginx/scale");
        assert_eq!(
            (t.resource.kind, t.subresource.as_deref()),
            ("Deployment", Some("scale"))
        );
        let t = target("/api/v1/nodes/node-1");
        assert_eq!(
            (t.resource.plural, t.name.as_deref()),
            ("nodes", Some("node-1"))
        );
        assert_eq!(route("/api").unwrap(), Route::CoreVersions);
        assert_eq!(route("/apis/").unwrap(), Route::Groups);
        assert_eq!(route("/livez/ping").unwrap(), Route::Health);
        assert!(matches!(
            route("/apis/apps/v1").unwrap(),
            Route::Resources { .. }
        ));
        assert!(matches!(
            route("/apis/batch/v1/jobs"),
            Err(RouteError::NotFound(_))
        ));
        assert!(matches!(
            route("/api/v1/namespaces/default/widgets"),
            Err(RouteError::NoResource { .. })
        ));
        assert!(route("/api/v1/namespaces/default/nodes/x").is_err());
        assert!(route("/api/v1/namespaces/default/pods/p/bogus").is_err());
        assert!(route("/nothing").is_err());
    }

    #[test]
    fn queries_and_field_selectors() {
        let q = query(Some(
            "labelSelector=run%3Dmy-nginx&limit=500&fieldSelector=metadata.name%3Dx",
        ));
        assert_eq!(q["labelSelector"], "run=my-nginx");
        assert_eq!(q["limit"], "500");
        let f = FieldSelector::parse(&q["fieldSelector"], &["metadata.name"]).unwrap();
        let obj = serde_json::json!({"metadata": {"name": "x"}, "status": {"phase": "Running"}});
        assert!(f.matches(&obj));
        let f = FieldSelector::parse("status.phase!=Running", &["status.phase"]).unwrap();
        assert!(!f.matches(&obj));
        assert!(FieldSelector::parse("spec.bogus=1", &["metadata.name"])
            .unwrap_err()
            .contains("not supported"));
        assert_eq!(decode("a%2Fb+c%"), "a/b c%");
        assert_eq!(unescape("a%2Fb+c%"), "a/b+c%");
        for (q, want) in [
            ("watch=true", true),
            ("watch=True", true),
            ("watch=1", true),
            ("watch", true),
            ("watch=false", false),
            ("watch=FALSE", false),
            ("watch=0", false),
            ("limit=5", false),
        ] {
            assert_eq!(flag(&query(Some(q)), "watch"), want, "{q}");
        }
    }
}
