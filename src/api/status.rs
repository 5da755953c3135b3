//! kube-apiserver's error answers: a `Status` object with the HTTP code,
//! a reason kubectl understands and the message it prints.

use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: Value::Null,
        }
    }

    /// `pods "x" not found`
    pub fn not_found(qualified: &str, name: &str) -> ApiError {
        let (kind, group) = qualified.split_once('.').unwrap_or((qualified, ""));
        ApiError {
            details: json!({"name": name, "group": group, "kind": kind}),
            ..ApiError::new(404, "NotFound", format!("{qualified} \"{name}\" not found"))
        }
    }

    /// A path no route takes.
    pub fn no_route() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// `422 Invalid`, as kube-apiserver's validation answers: one cause per
    /// `(field, message)`, and the message kubectl prints,
    /// `ConfigMap "x" is invalid: metadata.name: Invalid value: …`.
    pub fn invalid(kind: &str, group: &str, name: &str, causes: &[(&str, String)]) -> ApiError {
        let each: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        let all = match each.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        ApiError {
            details: json!({
                "name": name, "group": group, "kind": kind,
                "causes": causes.iter().map(|(f, m)| json!({
                    "reason": "FieldValueInvalid", "message": m, "field": f,
                })).collect::<Vec<_>>(),
            }),
            ..ApiError::new(
                422,
                "Invalid",
                format!("{kind} \"{name}\" is invalid: {all}"),
            )
        }
    }

    /// `413`: a body past kube-apiserver's limit (`--max-request-bytes`'s
    /// 3 MiB for a write).
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn method_not_allowed(what: &str) -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({what})"),
        )
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", message)
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !self.details.is_null() {
            v["details"] = self.details.clone();
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_kubectl_expects() {
        let e = ApiError::not_found("deployments.apps", "my-nginx").to_json();
        assert_eq!(e["message"], "deployments.apps \"my-nginx\" not found");
        assert_eq!(e["details"]["group"], "apps");
        assert_eq!(e["code"], 404);
        assert_eq!(ApiError::unauthorized().to_json()["reason"], "Unauthorized");
        let e = ApiError::invalid(
            "ConfigMap",
            "",
            "My_Pod",
            &[("metadata.name", "Invalid value: \"My_Pod\": bad".into())],
        );
        assert_eq!(
            e.message,
            "ConfigMap \"My_Pod\" is invalid: metadata.name: Invalid value: \"My_Pod\": bad"
        );
        let v = e.to_json();
        assert_eq!(
            (v["code"].clone(), v["reason"].clone()),
            (422.into(), "Invalid".into())
        );
        assert_eq!(v["details"]["causes"][0]["field"], "metadata.name");
    }
}
