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
        serde_yaml_ng::from_str(&self.text).map_err(|e| yaml_error(&self.at, &e))
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

/// serde_yaml reports lines relative to the document; make them absolute and
/// keep the message without its own "at line …" suffix.
fn yaml_error(doc: &Source, e: &serde_yaml_ng::Error) -> LabError {
    let mut message = e.to_string();
    if let Some(cut) = message.find(" at line ") {
        message.truncate(cut);
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
    fn missing_kind_is_an_error() {
        let err = split(Path::new("f"), "apiVersion: v1\n").unwrap_err();
        assert!(err.to_string().contains("missing `kind:`"));
    }
}
