//! `netlab get`: kubectl's columns for pods, nodes, deployments, services,
//! endpoints, events, secrets and configmaps.

use super::client::{self, Client};
use super::printer::{structured, Format, Printer};
use crate::api::resources;
use anyhow::{bail, Result};
use serde_json::Value;

pub use crate::cluster::tables::{external_ip, pod_summary, service_ports};

/// What `netlab get` names: a served resource.
pub type Kind = &'static resources::Resource;

/// `pods`, `po`, `deployments.apps`… → the served resource, as kubectl
/// resolves TYPE from discovery.
pub fn kind(s: &str) -> Result<Kind> {
    resources::lookup(s).ok_or_else(|| {
        let known: Vec<&str> = resources::RESOURCES.iter().map(|r| r.plural).collect();
        anyhow::anyhow!(
            "the server doesn't have a resource type {s:?} (netlab serves {})",
            known.join(", ")
        )
    })
}

/// `pod`, `deployment.apps`: how kubectl prefixes names (`-o name`, and
/// rows when several types are listed).
pub fn prefix(r: Kind) -> String {
    match r.group {
        "" => r.singular.to_string(),
        g => format!("{}.{g}", r.singular),
    }
}

pub struct GetArgs<'a> {
    pub kinds: Vec<Kind>,
    pub names: Vec<String>,
    pub selector: Option<String>,
    pub field_selector: Option<String>,
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
        let mut kinds: Vec<Kind> = Vec::new();
        let mut names = Vec::new();
        for t in targets {
            let (k, n) = t
                .split_once('/')
                .ok_or_else(|| anyhow::anyhow!("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form"))?;
            let kind = kind(k)?;
            if !kinds.is_empty() && kinds[0] != kind {
                bail!("netlab get TYPE/NAME takes one type at a time");
            }
            kinds = vec![kind];
            names.push(n.to_string());
        }
        return Ok((kinds, names));
    }
    let kinds = first.split(',').map(kind).collect::<Result<Vec<_>>>()?;
    Ok((kinds, targets[1..].to_vec()))
}

/// What the API answered for one kind: the objects (for `-o yaml/json/name`)
/// or the server's Table (for tables).
pub struct Fetched {
    pub kind: Kind,
    pub items: Vec<Value>,
    pub table: Option<Value>,
}

/// Asks the lab's API, as kubectl does: a list per kind (with the
/// selectors), or each named object; Tables for table output.
pub async fn fetch(client: &Client, args: &GetArgs<'_>) -> Result<Vec<Fetched>> {
    let tables = matches!(args.format, Format::Table | Format::Wide);
    let accept = if tables { client::TABLE } else { client::JSON };
    let mut out = Vec::new();
    for &kind in &args.kinds {
        let ns = if kind.namespaced {
            args.namespace
        } else {
            None
        };
        let mut answers = Vec::new();
        if args.names.is_empty() {
            let q = client::query(&[
                ("labelSelector", args.selector.as_deref().unwrap_or("")),
                (
                    "fieldSelector",
                    args.field_selector.as_deref().unwrap_or(""),
                ),
            ]);
            let path = format!("{}{q}", client::path(kind, ns, None));
            answers.push(client.get(&path, accept).await?);
        } else {
            let ns = ns.or(Some("default"));
            for n in &args.names {
                answers.push(client.get(&client::path(kind, ns, Some(n)), accept).await?);
            }
        }
        let mut f = Fetched {
            kind,
            items: Vec::new(),
            table: None,
        };
        for a in answers {
            if tables {
                match &mut f.table {
                    None => f.table = Some(a),
                    Some(t) => {
                        let rows = a["rows"].as_array().cloned().unwrap_or_default();
                        if let Some(all) = t["rows"].as_array_mut() {
                            all.extend(rows);
                        }
                    }
                }
            } else if a["kind"].as_str().is_some_and(|k| k.ends_with("List")) {
                f.items
                    .extend(a["items"].as_array().cloned().unwrap_or_default());
            } else {
                f.items.push(a);
            }
        }
        // A list's items carry no kind; kubectl's output names it.
        for v in &mut f.items {
            v["apiVersion"] = kind.group_version().into();
            v["kind"] = kind.kind.into();
        }
        out.push(f);
    }
    Ok(out)
}

pub fn render(fetched: &[Fetched], args: &GetArgs<'_>) -> Result<String> {
    let mut out = String::new();
    let multi = fetched.len() > 1;
    let mut found_any = false;
    let mut structured_items: Vec<Value> = Vec::new();
    for f in fetched {
        let rows = f
            .table
            .as_ref()
            .and_then(|t| t["rows"].as_array())
            .map_or(0, Vec::len);
        found_any |= !f.items.is_empty() || rows > 0;
        match args.format {
            Format::Yaml | Format::Json => structured_items.extend(f.items.iter().cloned()),
            Format::Name => {
                for v in &f.items {
                    out.push_str(&format!(
                        "{}/{}\n",
                        prefix(f.kind),
                        v["metadata"]["name"].as_str().unwrap_or_default()
                    ));
                }
            }
            Format::Table | Format::Wide => {
                if let Some(table) = f.table.as_ref().filter(|_| rows > 0) {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    let t = Printer::from_table(
                        table,
                        args.format == Format::Wide,
                        f.kind.namespaced && args.namespace.is_none(),
                        multi.then(|| prefix(f.kind)).as_deref(),
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
        let single = args.names.len() == 1 && !multi;
        return Ok(structured(&structured_items, single, args.format));
    }
    if !found_any {
        match args.namespace {
            Some(ns) if args.kinds.iter().any(|k| k.namespaced) => {
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
    use crate::api::objects;
    use crate::cluster::Selector;

    /// What the API answers for the tutorial's objects, without a server.
    fn fetched(args: &GetArgs<'_>) -> Vec<Fetched> {
        let st = objects::tutorial_state();
        args.kinds
            .iter()
            .map(|&kind| {
                let filter = objects::Filter {
                    namespace: args.namespace,
                    labels: Selector::parse(args.selector.as_deref().unwrap_or("")).unwrap(),
                    ..Default::default()
                };
                let (items, table) = objects::select(&st, kind, &filter, chrono::Utc::now(), true);
                Fetched {
                    kind,
                    items,
                    table: Some(table.to_json(true, "1")),
                }
            })
            .collect()
    }

    fn args(kinds: &str, selector: &str, format: Format) -> GetArgs<'static> {
        GetArgs {
            kinds: parse_targets(&[kinds.into()]).unwrap().0,
            names: vec![],
            selector: Some(selector.into()),
            field_selector: None,
            format,
            namespace: Some("default"),
            no_headers: false,
        }
    }

    #[test]
    fn pods_wide_has_kubectl_columns() {
        let args = args("pods", "run=my-nginx", Format::Wide);
        let out = render(&fetched(&args), &args).unwrap();
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
        let args = args("pods", "", Format::Yaml);
        let out = render(&fetched(&args), &args).unwrap();
        assert!(out.contains("kind: List"));
        assert_eq!(out.matches("podIP: 10.244.").count(), 2, "{out}");
    }

    #[test]
    fn several_kinds_prefix_their_rows() {
        let args = args("deploy,svc", "", Format::Table);
        let out = render(&fetched(&args), &args).unwrap();
        assert!(out.contains("deployment.apps/my-nginx"), "{out}");
        assert!(out.contains("service/"), "{out}");
    }

    #[test]
    fn targets() {
        let (k, n) = parse_targets(&["po,deploy".into()]).unwrap();
        assert_eq!(
            k.iter().map(|r| r.plural).collect::<Vec<_>>(),
            ["pods", "deployments"]
        );
        assert!(n.is_empty());
        let (k, n) = parse_targets(&["pod/a".into(), "pod/b".into()]).unwrap();
        assert_eq!(k.len(), 1);
        assert_eq!(n, ["a", "b"]);
        assert!(parse_targets(&["svcx".into()]).is_err());
    }
}
