//! The one printer for tables (kubectl's: upper-case headers, left-aligned
//! columns three spaces apart) and for `-o yaml|json|name`, plus kubectl's
//! AGE format.

use comfy_table::{presets, CellAlignment, ColumnConstraint, ContentArrangement, Table};
use serde::Serialize;

/// A kubectl-style table.
pub struct Printer {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Printer {
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Printer {
        Printer {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// A table the API renders, as kubectl prints it: upper-case headers,
    /// `-o wide` columns only when `wide`, a NAMESPACE column first for
    /// `-A`, and `kind/name` names when several kinds are printed.
    /// A `meta.k8s.io/v1` Table as the lab's API renders it (the one
    /// printing path for `netlab get` and kubectl): priority-1 columns only
    /// when `wide`, a NAMESPACE column from the rows' metadata.
    pub fn from_table(
        t: &serde_json::Value,
        wide: bool,
        namespace: bool,
        name_prefix: Option<&str>,
    ) -> Printer {
        let empty = Vec::new();
        let columns = t["columnDefinitions"].as_array().unwrap_or(&empty);
        let shown: Vec<usize> = (0..columns.len())
            .filter(|&i| wide || columns[i]["priority"].as_i64().unwrap_or(0) == 0)
            .collect();
        let mut headers: Vec<String> = Vec::new();
        if namespace {
            headers.push("NAMESPACE".into());
        }
        headers.extend(
            shown
                .iter()
                .map(|&i| columns[i]["name"].as_str().unwrap_or("").to_uppercase()),
        );
        let mut p = Printer::new(headers);
        for r in t["rows"].as_array().unwrap_or(&empty) {
            let mut row = Vec::new();
            if namespace {
                let ns = &r["object"]["metadata"]["namespace"];
                row.push(ns.as_str().unwrap_or_default().to_string());
            }
            for &i in &shown {
                let text = match &r["cells"][i] {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                match (name_prefix, columns[i]["format"].as_str()) {
                    (Some(k), Some("name")) => row.push(format!("{k}/{text}")),
                    _ => row.push(text),
                }
            }
            p.row(row);
        }
        p
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let mut table = Table::new();
        table
            .load_preset(presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled)
            .set_header(self.headers.clone());
        for r in &self.rows {
            table.add_row(r.clone());
        }
        let n = self.headers.len();
        for (i, column) in table.column_iter_mut().enumerate() {
            column.set_padding((0, if i + 1 == n { 0 } else { 3 }));
            column.set_cell_alignment(CellAlignment::Left);
            column.set_constraint(ColumnConstraint::ContentWidth);
        }
        let mut out = String::new();
        for line in table.lines() {
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `kubectl describe`'s layout: `Key:` then the value, values aligned two
/// spaces after the longest key; a value of several lines continues in the
/// value column.
pub fn fields(rows: &[(String, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0) + 2;
    let mut out = String::new();
    for (k, v) in rows {
        let mut lines = v.lines();
        let first = lines.next().unwrap_or("");
        out.push_str(format!("{:<width$}{first}", format!("{k}:")).trim_end());
        out.push('\n');
        for l in lines {
            out.push_str(&format!("{:width$}{l}\n", ""));
        }
    }
    out
}

pub use crate::cluster::tables::{age, human_duration, map_lines};

/// `-o` formats shared by every `get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Wide,
    Yaml,
    Json,
    Name,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "" => Ok(Format::Table),
            "wide" => Ok(Format::Wide),
            "yaml" => Ok(Format::Yaml),
            "json" => Ok(Format::Json),
            "name" => Ok(Format::Name),
            other => Err(format!(
                "unable to match a printer suitable for the output format {other:?}, allowed formats are: json, name, wide, yaml"
            )),
        }
    }
}

/// One object as itself, several as a `v1 List`, as kubectl prints them.
pub fn structured<T: Serialize>(items: &[T], single: bool, format: Format) -> String {
    let value = if single && items.len() == 1 {
        serde_json::to_value(&items[0]).expect("objects serialize")
    } else {
        serde_json::json!({
            "apiVersion": "v1",
            "items": items,
            "kind": "List",
            "metadata": { "resourceVersion": "" },
        })
    };
    match format {
        Format::Json => serde_json::to_string_pretty(&value).expect("json") + "\n",
        _ => serde_yaml_ng::to_string(&value).expect("yaml"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_fields_align() {
        let out = fields(&[
            ("Name".into(), "my-nginx".into()),
            ("Session Affinity".into(), "None".into()),
            ("Labels".into(), "a=b\nc=d".into()),
        ]);
        assert_eq!(
            out,
            "Name:              my-nginx\nSession Affinity:  None\nLabels:            a=b\n                   c=d\n"
        );
    }

    #[test]
    fn table_is_kubectl_shaped() {
        let mut p = Printer::new(["NAME", "READY", "STATUS"]);
        p.row(["my-nginx-abc-12345", "1/1", "Running"]);
        p.row(["x", "0/1", "Pending"]);
        assert_eq!(
            p.render(),
            "NAME                 READY   STATUS\nmy-nginx-abc-12345   1/1     Running\nx                    0/1     Pending\n"
        );
    }
}
