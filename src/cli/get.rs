//! `netlab get`: kubectl's columns for pods, nodes, deployments, replicasets, services,
//! endpoints, events, secrets and configmaps.

use super::printer::{structured, Format, Printer};
use crate::api::{objects, resources};
use crate::cluster::{ClusterState, Selector};
use anyhow::{bail, Result};
use chrono::{DateTime, Utc};

pub use crate::cluster::tables::{external_ip, pod_summary, service_ports};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pod,
    Node,
    Deployment,
    ReplicaSet,
    Service,
    Endpoints,
    Event,
    Secret,
    ConfigMap,
}

impl Kind {
    pub fn parse(s: &str) -> Result<Kind> {
        Ok(match s.to_lowercase().as_str() {
            "po" | "pod" | "pods" => Kind::Pod,
            "no" | "node" | "nodes" => Kind::Node,
            "deploy" | "deployment" | "deployments" | "deployment.apps" | "deployments.apps" => {
                Kind::Deployment
            }
            "rs" | "replicaset" | "replicasets" | "replicaset.apps" | "replicasets.apps" => {
                Kind::ReplicaSet
            }
            "svc" | "service" | "services" => Kind::Service,
            "ep" | "endpoints" => Kind::Endpoints,
            "ev" | "event" | "events" => Kind::Event,
            "secret" | "secrets" => Kind::Secret,
            "cm" | "configmap" | "configmaps" => Kind::ConfigMap,
            other => bail!(
                "the server doesn't have a resource type {other:?} (netlab knows pods, nodes, deployments, replicasets, services, endpoints, events, secrets, configmaps)"
            ),
        })
    }
    fn prefix(self) -> &'static str {
        match self {
            Kind::Pod => "pod",
            Kind::Node => "node",
            Kind::Deployment => "deployment.apps",
            Kind::ReplicaSet => "replicaset.apps",
            Kind::Service => "service",
            Kind::Endpoints => "endpoints",
            Kind::Event => "event",
            Kind::Secret => "secret",
            Kind::ConfigMap => "configmap",
        }
    }
    /// The API resource it names.
    fn resource(self) -> &'static resources::Resource {
        let (group, plural) = match self {
            Kind::Pod => ("", "pods"),
            Kind::Node => ("", "nodes"),
            Kind::Deployment => ("apps", "deployments"),
            Kind::ReplicaSet => ("apps", "replicasets"),
            Kind::Service => ("", "services"),
            Kind::Endpoints => ("", "endpoints"),
            Kind::Event => ("", "events"),
            Kind::Secret => ("", "secrets"),
            Kind::ConfigMap => ("", "configmaps"),
        };
        resources::find(group, "v1", plural).expect("every kind is served")
    }

    /// The plural kubectl uses in "not found" messages.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Pod => "pods",
            Kind::Node => "nodes",
            Kind::Deployment => "deployments.apps",
            Kind::ReplicaSet => "replicasets.apps",
            Kind::Service => "services",
            Kind::Endpoints => "endpoints",
            Kind::Event => "events",
            Kind::Secret => "secrets",
            Kind::ConfigMap => "configmaps",
        }
    }
}

pub struct GetArgs<'a> {
    pub kinds: Vec<Kind>,
    pub names: Vec<String>,
    pub selector: Selector,
    pub format: Format,
    pub namespace: Option<&'a str>, // None: all namespaces
    pub no_headers: bool,
}

/// Splits `pods`, `po,deploy`, `pod/NAME` forms into kinds and names.
pub fn parse_targets(targets: &[String]) -> Result<(Vec<Kind>, Vec<String>)> {
    let Some(first) = targets.first() else {
        bail!("you must specify the type of resource to get, e.g. netlab get pods");
    };
    if first.contains('/') {
        let mut kinds = Vec::new();
        let mut names = Vec::new();
        for t in targets {
            let (k, n) = t
                .split_once('/')
                .ok_or_else(|| anyhow::anyhow!("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form"))?;
            let kind = Kind::parse(k)?;
            if !kinds.is_empty() && kinds[0] != kind {
                bail!("netlab get TYPE/NAME takes one type at a time");
            }
            kinds = vec![kind];
            names.push(n.to_string());
        }
        return Ok((kinds, names));
    }
    let kinds = first
        .split(',')
        .map(Kind::parse)
        .collect::<Result<Vec<_>>>()?;
    Ok((kinds, targets[1..].to_vec()))
}

pub fn render(state: &ClusterState, args: &GetArgs<'_>, now: DateTime<Utc>) -> Result<String> {
    let mut out = String::new();
    let multi = args.kinds.len() > 1;
    let mut found_any = false;
    let mut structured_items: Vec<serde_json::Value> = Vec::new();
    for kind in &args.kinds {
        // The same selection the lab's API makes for kubectl.
        let resource = kind.resource();
        let filter = objects::Filter {
            namespace: args.namespace,
            labels: args.selector.clone(),
            ..Default::default()
        };
        let (mut items, mut table) = objects::select(state, resource, &filter, now);
        if !args.names.is_empty() {
            let named = |m: Option<&str>| args.names.iter().any(|n| m == Some(n.as_str()));
            items.retain(|v| named(v["metadata"]["name"].as_str()));
            table.rows.retain(|r| named(r.meta.name.as_deref()));
        }
        // Named objects that do not exist are errors, as in kubectl.
        for n in &args.names {
            if !items
                .iter()
                .any(|v| v["metadata"]["name"].as_str() == Some(n.as_str()))
            {
                bail!("{} {n:?} not found", kind.plural());
            }
        }
        found_any |= !items.is_empty();
        match args.format {
            Format::Yaml | Format::Json => structured_items.extend(items),
            Format::Name => {
                for v in &items {
                    out.push_str(&format!(
                        "{}/{}\n",
                        kind.prefix(),
                        v["metadata"]["name"].as_str().unwrap_or_default()
                    ));
                }
            }
            Format::Table | Format::Wide => {
                if !table.rows.is_empty() {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    let namespaced = *kind != Kind::Node;
                    let t = Printer::from_table(
                        &table,
                        args.format == Format::Wide,
                        namespaced && args.namespace.is_none(),
                        multi.then(|| kind.prefix()),
                    );
                    let text = t.render();
                    match args.no_headers {
                        true => text
                            .lines()
                            .skip(1)
                            .for_each(|l| out.push_str(&format!("{l}\n"))),
                        false => out.push_str(&text),
                    }
                }
            }
        }
    }
    if matches!(args.format, Format::Yaml | Format::Json) {
        let single = !args.names.is_empty() && args.names.len() == 1 && !multi;
        return Ok(structured(&structured_items, single, args.format));
    }
    if !found_any {
        match args.namespace {
            Some(ns) if args.kinds.iter().any(|k| *k != Kind::Node) => {
                eprintln!("No resources found in {ns} namespace.")
            }
            _ => eprintln!("No resources found"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> ClusterState {
        crate::api::objects::tutorial_state()
    }

    #[test]
    fn pods_wide_has_kubectl_columns() {
        let s = state();
        let args = GetArgs {
            kinds: vec![Kind::Pod],
            names: vec![],
            selector: Selector::parse("run=my-nginx").unwrap(),
            format: Format::Wide,
            namespace: Some("default"),
            no_headers: false,
        };
        let out = render(&s, &args, Utc::now()).unwrap();
        let header: Vec<&str> = out
            .lines()
            .next()
            .unwrap()
            .split("   ")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        assert_eq!(
            header,
            [
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE",
                "NOMINATED NODE",
                "READINESS GATES"
            ]
        );
        assert_eq!(out.lines().count(), 3);
        assert!(out.contains("10.244.1.2"));
        assert!(out.contains("node-2"));
    }

    #[test]
    fn yaml_list_has_pod_ips() {
        let s = state();
        let args = GetArgs {
            kinds: vec![Kind::Pod],
            names: vec![],
            selector: Selector::default(),
            format: Format::Yaml,
            namespace: Some("default"),
            no_headers: false,
        };
        let out = render(&s, &args, Utc::now()).unwrap();
        assert!(out.contains("kind: List"));
        assert_eq!(out.matches("podIP: 10.244.").count(), 2, "{out}");
        assert!(out.contains("kind: Pod"));
    }

    #[test]
    fn targets() {
        let (k, n) = parse_targets(&["po,deploy".into()]).unwrap();
        assert_eq!(k, vec![Kind::Pod, Kind::Deployment]);
        assert!(n.is_empty());
        let (k, n) = parse_targets(&["pod/a".into(), "pod/b".into()]).unwrap();
        assert_eq!(
            (k, n),
            (vec![Kind::Pod], vec!["a".to_string(), "b".to_string()])
        );
        assert!(parse_targets(&["svcx".into()]).is_err());
    }
}
