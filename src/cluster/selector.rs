//! Label selectors as `kubectl -l` takes them: `run=my-nginx`, `a==b`, `a!=b`,
//! `a`, `!a`, `env in (prod,dev)`, `env notin (dev)`, joined by commas.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, String> {
        let mut reqs = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let req = if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEq(key(k)?, v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::Eq(key(k)?, v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::Eq(key(k)?, v.trim().into())
            } else if let Some(k) = part.strip_prefix('!') {
                Requirement::NotExists(key(k)?)
            } else if let Some((k, set)) = part.split_once(" notin ") {
                Requirement::NotIn(key(k)?, set_values(set)?)
            } else if let Some((k, set)) = part.split_once(" in ") {
                Requirement::In(key(k)?, set_values(set)?)
            } else {
                Requirement::Exists(key(part)?)
            };
            reqs.push(req);
        }
        Ok(Selector(reqs))
    }

    pub fn from_labels(labels: &BTreeMap<String, String>) -> Selector {
        Selector(
            labels
                .iter()
                .map(|(k, v)| Requirement::Eq(k.clone(), v.clone()))
                .collect(),
        )
    }

    /// Whether `labels` match a map selector (what [`Self::from_labels`]
    /// makes), without making one: for scans over many selectors.
    pub fn labels_match(
        selector: &BTreeMap<String, String>,
        labels: Option<&BTreeMap<String, String>>,
    ) -> bool {
        selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
    }

    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let empty = BTreeMap::new();
        let labels = labels.unwrap_or(&empty);
        self.0.iter().all(|r| match r {
            Requirement::Eq(k, v) => labels.get(k) == Some(v),
            Requirement::NotEq(k, v) => labels.get(k) != Some(v),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
        })
    }
}

/// Whether a LabelSelector (matchLabels and matchExpressions) selects
/// `labels`. An empty selector selects everything, as in a
/// NetworkPolicy's `podSelector: {}`.
pub fn label_selector_selects(
    sel: &LabelSelector,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    sel.match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
        && sel.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// A LabelSelector as kubectl prints it (`metav1.FormatLabelSelector`):
/// its requirements sorted by key, `k=v`, `k in (a,b)`, `k notin (a)`,
/// `k`, `!k`, joined by commas; `<none>` for the empty selector (which
/// selects everything), `<error>` for one that is not a selector.
pub fn format_label_selector(s: &LabelSelector) -> String {
    let mut reqs: Vec<(&str, String)> = Vec::new();
    for (k, v) in s.match_labels.iter().flatten() {
        reqs.push((k, format!("{k}={v}")));
    }
    for e in s.match_expressions.iter().flatten() {
        let mut values = e.values.clone().unwrap_or_default();
        values.sort();
        let (k, set) = (&e.key, values.join(","));
        reqs.push((
            k,
            match (e.operator.as_str(), values.is_empty()) {
                ("In", false) => format!("{k} in ({set})"),
                ("NotIn", false) => format!("{k} notin ({set})"),
                ("Exists", true) => k.clone(),
                ("DoesNotExist", true) => format!("!{k}"),
                _ => return "<error>".into(),
            },
        ));
    }
    reqs.sort_by(|a, b| a.0.cmp(b.0));
    match reqs.is_empty() {
        true => "<none>".into(),
        false => reqs
            .into_iter()
            .map(|(_, r)| r)
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Objects by namespace and by (namespace, label, value), so that what a
/// selector selects is found without a scan of every object: at 10 000
/// Services over 1 000 pods those scans made each endpoints refresh take
/// half a second. The objects keep their order.
pub struct LabelIndex<'a, T> {
    by_namespace: HashMap<&'a str, Vec<&'a T>>,
    by_label: HashMap<(&'a str, &'a str, &'a str), Vec<&'a T>>,
}

impl<'a, T: k8s_openapi::Metadata<Ty = ObjectMeta>> LabelIndex<'a, T> {
    pub fn new(objects: impl IntoIterator<Item = &'a T>) -> Self {
        let mut by_namespace: HashMap<&str, Vec<&T>> = HashMap::new();
        let mut by_label: HashMap<(&str, &str, &str), Vec<&T>> = HashMap::new();
        for o in objects {
            let m = o.metadata();
            let ns = super::state::namespace(m);
            by_namespace.entry(ns).or_default().push(o);
            for (k, v) in m.labels.iter().flatten() {
                by_label.entry((ns, k, v)).or_default().push(o);
            }
        }
        LabelIndex {
            by_namespace,
            by_label,
        }
    }

    /// The objects of `namespace` that `selector` selects.
    pub fn select<'s>(
        &'s self,
        namespace: &'s str,
        selector: &'s Selector,
    ) -> impl Iterator<Item = &'a T> + 's {
        // The narrowest of the selector's equalities; else every object
        // of the namespace.
        let mut narrowest: Option<&Vec<&T>> = self.by_namespace.get(namespace);
        for r in &selector.0 {
            if let Requirement::Eq(k, v) = r {
                let list = self.by_label.get(&(namespace, k.as_str(), v.as_str()));
                match list {
                    None => {
                        narrowest = None;
                        break;
                    }
                    Some(l) if narrowest.is_none_or(|n| l.len() < n.len()) => narrowest = Some(l),
                    Some(_) => {}
                }
            }
        }
        narrowest
            .into_iter()
            .flatten()
            .copied()
            .filter(|o| selector.matches(o.metadata().labels.as_ref()))
    }
}

fn key(k: &str) -> Result<String, String> {
    let k = k.trim();
    if k.is_empty() || k.contains(char::is_whitespace) {
        return Err(format!("invalid label selector key {k:?}"));
    }
    Ok(k.to_string())
}

fn set_values(set: &str) -> Result<Vec<String>, String> {
    let inner = set
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("invalid label selector set {set:?}: write it as (a,b)"))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
}

/// Splits at commas that are not inside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors_print_as_kubectl_prints_them() {
        let f = |yaml: &str| format_label_selector(&serde_yaml_ng::from_str(yaml).unwrap());
        assert_eq!(f("{}"), "<none>");
        assert_eq!(f("{matchLabels: {role: db, app: web}}"), "app=web,role=db");
        assert_eq!(
            f("{matchLabels: {tier: x}, matchExpressions: [{key: env, operator: In, values: [prod, dev]}, {key: zone, operator: DoesNotExist}, {key: canary, operator: Exists}, {key: team, operator: NotIn, values: [a]}]}"),
            "canary,env in (dev,prod),team notin (a),tier=x,!zone"
        );
        assert_eq!(f("{matchExpressions: [{key: a, operator: In}]}"), "<error>");
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn equality_and_sets() {
        let l = labels(&[("run", "my-nginx"), ("env", "prod")]);
        let m = |s: &str| Selector::parse(s).unwrap().matches(Some(&l));
        assert!(m("run=my-nginx"));
        assert!(m("run==my-nginx,env=prod"));
        assert!(!m("run=other"));
        assert!(m("run!=other"));
        assert!(m("env"));
        assert!(!m("!env"));
        assert!(m("env in (prod,dev)"));
        assert!(!m("env notin (prod)"));
        assert!(m(""));
        assert!(!Selector::parse("x").unwrap().matches(None));
    }

    #[test]
    fn the_index_selects_what_a_scan_selects() {
        use k8s_openapi::api::core::v1::Pod;
        let pod = |ns: &str, name: &str, l: &[(&str, &str)]| Pod {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                labels: Some(labels(l)),
                ..Default::default()
            },
            ..Default::default()
        };
        let pods = [
            pod("default", "a", &[("app", "x"), ("tier", "web")]),
            pod("default", "b", &[("app", "x")]),
            pod("other", "c", &[("app", "x"), ("tier", "web")]),
            pod("default", "d", &[("app", "y"), ("tier", "web")]),
        ];
        let index = LabelIndex::new(&pods);
        let names = |ns: &str, sel: &str| -> Vec<String> {
            let sel = Selector::parse(sel).unwrap();
            let got: Vec<String> = index
                .select(ns, &sel)
                .map(|p| p.metadata.name.clone().unwrap())
                .collect();
            let scanned: Vec<String> = pods
                .iter()
                .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
                .filter(|p| sel.matches(p.metadata.labels.as_ref()))
                .map(|p| p.metadata.name.clone().unwrap())
                .collect();
            assert_eq!(got, scanned, "{ns} {sel:?}");
            got
        };
        assert_eq!(names("default", "app=x,tier=web"), ["a"]);
        assert_eq!(names("default", "app=x"), ["a", "b"]);
        assert_eq!(names("default", "tier=web,app!=x"), ["d"]);
        assert_eq!(names("default", ""), ["a", "b", "d"]);
        assert_eq!(names("default", "app=z"), Vec::<String>::new());
        assert_eq!(names("nowhere", "app=x"), Vec::<String>::new());
        assert_eq!(names("other", "tier"), ["c"]);
    }
}
