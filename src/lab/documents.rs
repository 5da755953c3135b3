//! Splitting a multi-document YAML file into documents that remember the
//! line they start on, so that every later error can name `file:line`.

use super::error::{LabError, Source};
use serde::de::DeserializeOwned;
use std::path::Path;

/// One YAML document of a lab file.
#[derive(Debug, Clone)]
pub struct Document {
    pub text: String,
    pub at: Source,
    pub api_version: String,
    pub kind: String,
}

/// Splits `text` at `---` separator lines. Empty documents (comments only) are
/// dropped, as kubectl drops them.
pub fn split(path: &Path, text: &str) -> Result<Vec<Document>, LabError> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut start_line = 1;
    let mut push = |current: &mut String, start_line: usize| -> Result<(), LabError> {
        let body = std::mem::take(current);
        if body
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Ok(());
        }
        let at = Source {
            file: path.to_path_buf(),
            line: start_line,
        };
        let value: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&body).map_err(|e| yaml_error(&at, &e))?;
        let field = |name: &str| {
            value
                .get(name)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        if !value.is_mapping() {
            return Err(LabError::invalid(
                &at,
                "document",
                "a lab document must be a Kubernetes object (a mapping with apiVersion and kind)",
            ));
        }
        let (api_version, kind) = (field("apiVersion"), field("kind"));
        if kind.is_empty() {
            return Err(LabError::invalid(
                &at,
                "document",
                "missing `kind:` (expected Deployment, Pod or Lab)",
            ));
        }
        docs.push(Document {
            text: body,
            at,
            api_version,
            kind,
        });
        Ok(())
    };
    for (i, line) in text.lines().enumerate() {
        let is_separator = line.starts_with("---")
            && line[3..]
                .trim_start()
                .chars()
                .next()
                .is_none_or(|c| c == '#');
        if is_separator || line == "..." {
            push(&mut current, start_line)?;
            // The next document's first line is the line after the separator;
            // pad so that line numbers inside the document stay absolute.
            start_line = i + 2;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    push(&mut current, start_line)?;
    Ok(docs)
}

impl Document {
    /// Deserializes into a typed object; errors point at the absolute line.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, LabError> {
        serde_yaml_ng::from_str(&self.text).or_else(|e| {
            // kubectl reads YAML 1.1, where `defaultMode: 0400` is octal;
            // YAML 1.2 reads a string. Retry with those converted, and
            // report the error with its field path (the line is then the
            // document's) if that fails too.
            let mut value: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(&self.text).map_err(|e| yaml_error(&self.at, &e))?;
            if !yaml11_octal_modes(&mut value) {
                return Err(yaml_error(&self.at, &e));
            }
            // Through text again, for an error that names the field.
            let text = serde_yaml_ng::to_string(&value).unwrap_or_default();
            serde_yaml_ng::from_str(&text).map_err(|e| {
                let mut err = yaml_error(&self.at, &e);
                if let LabError::Yaml { at, .. } = &mut err {
                    *at = self.at.clone();
                }
                err
            })
        })
    }

    /// `metadata.name` as written, for messages before typed parsing.
    pub fn object_name(&self) -> String {
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&self.text).unwrap_or_default();
        let name = v
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(|n| n.as_str())
            .unwrap_or("<unnamed>");
        format!("{}/{}", self.kind, name)
    }
}

/// Converts `mode`/`defaultMode` strings written as YAML 1.1 octal
/// (`0400`) to numbers; true when one was found.
fn yaml11_octal_modes(v: &mut serde_yaml_ng::Value) -> bool {
    use serde_yaml_ng::Value;
    let mut found = false;
    match v {
        Value::Mapping(m) => {
            for (k, val) in m.iter_mut() {
                let is_mode = matches!(k.as_str(), Some("mode" | "defaultMode"));
                if let (true, Value::String(s)) = (is_mode, &*val) {
                    let octal = s.len() > 1
                        && s.starts_with('0')
                        && s.bytes().all(|b| (b'0'..=b'7').contains(&b));
                    if let (true, Ok(n)) = (octal, i64::from_str_radix(s, 8)) {
                        *val = Value::Number(n.into());
                        found = true;
                        continue;
                    }
                }
                found |= yaml11_octal_modes(val);
            }
        }
        Value::Sequence(s) => {
            for x in s {
                found |= yaml11_octal_modes(x);
            }
        }
        Value::Tagged(t) => found |= yaml11_octal_modes(&mut t.value),
        _ => {}
    }
    found
}

/// serde_yaml reports lines relative to the document; make them absolute and
/// keep the message without its own "at line …" suffix.
fn yaml_error(doc: &Source, e: &serde_yaml_ng::Error) -> LabError {
    let mut message = e.to_string();
    if let Some(cut) = message.find(" at line ") {
        message.truncate(cut);
    }
    // A Secret's or ConfigMap's binary value that is not base64.
    let base64 = [
        "Invalid symbol",
        "Invalid input length",
        "Invalid last symbol",
        "Invalid padding",
    ];
    if let Some((field, detail)) = message.split_once(": ") {
        if base64.iter().any(|b| detail.starts_with(b)) {
            message = format!(
                "{field}: not valid base64 ({detail}): values under data and binaryData are base64-encoded; write plain text under stringData (Secret) or data (ConfigMap) instead"
            );
        }
    }
    let line = e
        .location()
        .map(|l| doc.line + l.line() - 1)
        .unwrap_or(doc.line);
    LabError::Yaml {
        at: Source {
            file: doc.file.clone(),
            line,
        },
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_keeps_absolute_lines() {
        let text = "# header\napiVersion: v1\nkind: Pod\n---\n\n---\napiVersion: apps/v1\nkind: Deployment\n";
        let docs = split(Path::new("f.yaml"), text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].at.line, 1);
        assert_eq!(docs[1].kind, "Deployment");
        assert_eq!(docs[1].at.line, 7);
    }

    #[test]
    fn yaml_error_names_file_and_absolute_line() {
        let text =
            "apiVersion: v1\nkind: Pod\n---\napiVersion: v1\nkind: Pod\nmetadata: [unclosed\n";
        let err = split(Path::new("bad.yaml"), text).unwrap_err().to_string();
        assert!(err.starts_with("bad.yaml:"), "{err}");
        assert!(err.contains("invalid YAML"), "{err}");
        let line: usize = err.split(':').nth(1).unwrap().parse().unwrap();
        assert!(line >= 6, "{err}");
    }

    #[test]
    fn separator_with_comment() {
        let docs = split(Path::new("f"), "kind: A\n--- # second\nkind: B\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].at.line, 3);
    }

    #[test]
    fn yaml11_octal_modes_are_read_as_kubectl_reads_them() {
        let text = "apiVersion: v1\nkind: Pod\nspec:\n  volumes:\n  - name: s\n    secret: {secretName: x, defaultMode: 0400, items: [{key: a, path: a, mode: 0755}]}\n  containers: []\n";
        let docs = split(Path::new("f"), text).unwrap();
        let pod: k8s_openapi::api::core::v1::Pod = docs[0].parse().unwrap();
        let v = &pod.spec.unwrap().volumes.unwrap()[0];
        let s = v.secret.as_ref().unwrap();
        assert_eq!(s.default_mode, Some(0o400));
        assert_eq!(s.items.as_ref().unwrap()[0].mode, Some(0o755));
        // A wrong type elsewhere is still reported at its line.
        let bad = text.replace("containers: []", "containers: 3");
        let err = split(Path::new("f"), &bad).unwrap()[0]
            .parse::<k8s_openapi::api::core::v1::Pod>()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("f:1"), "{err}");
        assert!(err.contains("spec.containers"), "{err}");
    }

    #[test]
    fn missing_kind_is_an_error() {
        let err = split(Path::new("f"), "apiVersion: v1\n").unwrap_err();
        assert!(err.to_string().contains("missing `kind:`"));
    }
}
