//! Label selectors as `kubectl -l` takes them: `run=my-nginx`, `a==b`, `a!=b`,
//! `a`, `!a`, `env in (prod,dev)`, `env notin (dev)`, joined by commas.

use std::collections::BTreeMap;

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
}
