//! The one printer for tables (kubectl's: upper-case headers, left-aligned
//! columns three spaces apart) and for `-o yaml|json|name`, plus kubectl's
//! AGE format.

use chrono::{DateTime, Utc};
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

/// `k=v` lines for Labels/Selector/Annotations, or `<none>`.
pub fn map_lines(map: Option<&std::collections::BTreeMap<String, String>>, sep: &str) -> String {
    match map {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(sep),
        _ => "<none>".into(),
    }
}

/// kubectl's `duration.HumanDuration`.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

pub fn age(
    created: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    now: DateTime<Utc>,
) -> String {
    match created {
        Some(t) => human_duration((now - t.0).num_seconds()),
        None => "<unknown>".into(),
    }
}

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
    fn kubectl_ages() {
        assert_eq!(human_duration(13), "13s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(100 * 86400), "100d");
    }

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
