//! Writes: create (POST), replace (PUT), patch (PATCH: strategic merge,
//! merge, JSON patch; `scale`), delete (DELETE). Each is the same pure edit
//! of the object store netlab's verbs make (`cluster::objects`), committed
//! to the store before the answer (the object as stored, as
//! kube-apiserver answers); the lab's control loops converge afterwards.

use super::request::Target;
use super::resources::Resource;
use super::status::ApiError;
use crate::cluster::gc::Propagation;
use crate::cluster::managed;
use crate::cluster::objects::{self, Mode, ObjectError};
use crate::cluster::patch::{self, PatchType};
use crate::cluster::ClusterState;
use crate::controller::ControllerError;
use crate::store::ObjectStore;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use serde_json::{json, Value};
use std::collections::HashMap;

/// A write the API hands to the lab's process, which runs them one at a
/// time in its main loop (the one writer; see `controller::daemon`).
pub enum Op {
    Create(Target, HashMap<String, String>, Value),
    Update(Target, HashMap<String, String>, Edit),
    /// With the request's body: its DeleteOptions, if any.
    Delete(Target, HashMap<String, String>, Vec<u8>),
    /// A pod's `eviction` subresource, with the Eviction.
    Evict(Target, HashMap<String, String>, Value),
}

pub struct Request {
    pub op: Op,
    pub reply: tokio::sync::oneshot::Sender<Result<(u16, Value), ApiError>>,
}

/// Runs one write.
pub async fn execute(store: &ObjectStore, op: Op) -> Result<(u16, Value), ApiError> {
    let w = Writer { store };
    match op {
        Op::Create(t, q, obj) => w.admit(&t, &q, obj, Mode::Create).await,
        Op::Update(t, q, edit) => w.update(&t, &q, edit).await,
        Op::Delete(t, q, body) => w.delete(&t, &q, &body).await,
        Op::Evict(t, q, eviction) => w.evict(&t, &q, &eviction).await,
    }
}

/// The lab's process making writes to its store.
struct Writer<'a> {
    store: &'a ObjectStore,
}

impl Writer<'_> {
    /// A write: `f` edits the latest state, and it is committed:
    /// acknowledged. The lab's control loops act on it afterwards (the
    /// workload controllers and the kubelet in `controller::daemon`, the
    /// endpoints controller and the proxy in `controller::service_plane`),
    /// as Kubernetes' controllers, kubelets and kube-proxy follow
    /// kube-apiserver. (The workload controllers used to run here, in every
    /// write: 40 ms of each at 10 000 Services.)
    fn change<T>(
        &self,
        f: impl FnOnce(&mut ClusterState) -> Result<T, ControllerError>,
    ) -> Result<T, ControllerError> {
        self.store.update(f)
    }
}

/// The object as stored (with its new resourceVersion).
fn stored(store: &ObjectStore, r: &Resource, target: &objects::Target) -> Result<Value, ApiError> {
    let snap = store.snapshot();
    objects::get_json(&snap.state, target)
        .map(|v| with_type(r, v))
        .map_err(|e| object_error(r, target.name, e))
}

/// The manager a write is recorded under: its `fieldManager` (the API's
/// handler fills it in from the User-Agent when the client sent none).
fn field_manager(q: &HashMap<String, String>) -> String {
    q.get("fieldManager")
        .filter(|m| !m.is_empty())
        .cloned()
        .unwrap_or_else(|| "unknown".into())
}

/// An object's managedFields.
fn entries(v: Option<&Value>) -> Vec<ManagedFieldsEntry> {
    v.and_then(|v| serde_json::from_value(v["metadata"]["managedFields"].clone()).ok())
        .unwrap_or_default()
}

/// kube-apiserver's 409 for an apply that would change others' fields.
fn apply_conflicts(r: &Resource, name: &str, conflicts: &[managed::Conflict]) -> ApiError {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| {
            json!({"reason": "FieldManagerConflict",
                   "message": format!("conflict with {:?} using {}", c.manager, c.api_version),
                   "field": managed::display(&c.path)})
        })
        .collect();
    ApiError {
        details: json!({"name": name, "group": r.group, "kind": r.plural, "causes": causes}),
        ..ApiError::new(409, "Conflict", managed::conflict_message(conflicts))
    }
}

/// kube-apiserver's answer to an update based on an old resourceVersion.
fn conflict(r: &Resource, name: &str) -> ApiError {
    ApiError {
        details: json!({"name": name, "group": r.group, "kind": r.plural}),
        ..ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                r.qualified()
            ),
        )
    }
}

/// kube-apiserver's limit on a request body.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// The kind `cluster::objects` knows a resource by, for the writable ones.
fn store_kind(r: &Resource) -> Option<&'static str> {
    Some(match r.plural {
        "namespaces" => "namespace",
        "pods" => "pod",
        "nodes" => "node",
        "services" => "service",
        "deployments" => "deployment",
        "replicasets" => "replicaset",
        "secrets" => "secret",
        "configmaps" => "configmap",
        "serviceaccounts" => "serviceaccount",
        "roles" => "role",
        "rolebindings" => "rolebinding",
        "clusterroles" => "clusterrole",
        "clusterrolebindings" => "clusterrolebinding",
        "networkpolicies" => "networkpolicy",
        _ => return None,
    })
}

/// A node is the lab's: its Lab document makes and removes it; the API
/// changes only its labels, annotations, cordon and taints.
fn not_made_here(kind: &str) -> Result<(), ApiError> {
    if kind == "node" {
        return Err(ApiError::method_not_allowed(
            "nodes are the lab's: its Lab document makes them (spec.nodes); they cannot be created or deleted through the API",
        ));
    }
    Ok(())
}

fn writable(t: &Target) -> Result<&'static str, ApiError> {
    store_kind(t.resource).ok_or_else(|| {
        ApiError::method_not_allowed(&format!(
            "{} are made by the lab itself and cannot be written",
            t.resource.qualified()
        ))
    })
}

fn object_error(r: &Resource, name: &str, e: ObjectError) -> ApiError {
    match e {
        ObjectError::NotFound { .. } => ApiError::not_found(&r.qualified(), name),
        ObjectError::AlreadyExists { .. } => ApiError {
            details: json!({"name": name, "group": r.group, "kind": r.plural}),
            ..ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", r.qualified()),
            )
        },
        other => invalid(r, name, other.to_string()),
    }
}

fn invalid(r: &Resource, name: &str, why: String) -> ApiError {
    // Said once, though the model's message may say it already
    // (`Service "x" is invalid: …`).
    let prefix = format!("{} \"{name}\" is invalid: ", r.kind);
    let why = why.strip_prefix(&prefix).unwrap_or(&why).to_string();
    // `spec.ports[0].nodePort: Invalid value: …`: the field, as
    // kube-apiserver names it in the cause (not of a `[a, b]` list).
    let cause = match why.split_once(": ") {
        Some((field, message))
            if !field.contains(' ')
                && field.contains('.')
                && !field.starts_with('[')
                && !message.is_empty() =>
        {
            json!({"reason": "FieldValueInvalid", "message": message, "field": field})
        }
        _ => json!({"reason": "FieldValueInvalid", "message": why}),
    };
    ApiError {
        details: json!({"name": name, "group": r.group, "kind": r.kind, "causes": [cause]}),
        ..ApiError::new(422, "Invalid", format!("{prefix}{why}"))
    }
}

fn controller_error(r: &Resource, name: &str, e: ControllerError) -> ApiError {
    match e {
        ControllerError::Object(m) if m.contains("not found") => {
            ApiError::not_found(&r.qualified(), name)
        }
        ControllerError::Object(m) if m.contains("already exists") => object_error(
            r,
            name,
            ObjectError::AlreadyExists {
                kind: "",
                name: name.into(),
            },
        ),
        ControllerError::Object(m) => invalid(r, name, m),
        ControllerError::Forbidden(m) => ApiError {
            details: json!({"name": name, "group": r.group, "kind": r.plural}),
            ..ApiError::new(403, "Forbidden", m)
        },
        other => ApiError::internal(other.to_string()),
    }
}

/// A body as JSON: JSON, YAML, or Kubernetes protobuf (which kubectl
/// 1.32+ sends for `create secret` and `create configmap`).
pub fn parse_body(content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    let ct = content_type.split(';').next().unwrap_or("").trim();
    if ct == "application/vnd.kubernetes.protobuf" {
        return super::protobuf::decode(body);
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the request body is not UTF-8 text"))?;
    serde_json::from_str(text)
        .or_else(|_| serde_yaml_ng::from_str(text))
        .map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON or YAML: {e}"))
        })
}

/// The object's namespace must be the path's (or unset).
fn in_namespace(t: &Target, obj: &mut Value) -> Result<String, ApiError> {
    let ns = t.namespace.clone().unwrap_or_else(|| "default".into());
    match obj["metadata"]["namespace"].as_str() {
        Some(n) if !n.is_empty() && n != ns => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            obj["metadata"]["namespace"] = ns.clone().into();
            Ok(ns)
        }
    }
}

fn with_type(r: &Resource, mut v: Value) -> Value {
    v["apiVersion"] = r.group_version().into();
    v["kind"] = r.kind.into();
    v
}

fn dry_run(q: &HashMap<String, String>) -> bool {
    q.get("dryRun").is_some_and(|v| v == "All")
}

/// `fieldValidation=Warn`, kube-apiserver's default: the unknown fields
/// of a body that is (part of) the object, for `Warning` headers; the
/// write goes ahead and the store drops them. Strict is checked in the
/// write itself, on the object as it would be stored.
pub fn warnings(op: &Op) -> Vec<String> {
    let (t, q, body) = match op {
        Op::Create(t, q, v) | Op::Update(t, q, Edit::Replace(v) | Edit::Apply(v)) => {
            (t, q, Some(v.clone()))
        }
        Op::Update(t, q, Edit::Patch(PatchType::Strategic | PatchType::Merge, text)) => {
            (t, q, serde_json::from_str(text).ok())
        }
        _ => return Vec::new(),
    };
    let warn = matches!(
        q.get("fieldValidation").map(String::as_str),
        None | Some("Warn")
    );
    match (body, super::schemas::definition_name(t.resource)) {
        (Some(body), Some(def)) if warn && t.subresource.is_none() => {
            super::schemas::unknown_fields(&def, &body)
                .into_iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect()
        }
        _ => Vec::new(),
    }
}

/// `fieldValidation=Strict`: an object with fields its schema does not
/// declare is refused, with kube-apiserver's 400 naming each field
/// (`Ignore` and `Warn` let them through; the store drops them).
fn strict(r: &Resource, q: &HashMap<String, String>, obj: &Value) -> Result<(), ApiError> {
    if q.get("fieldValidation").map(String::as_str) != Some("Strict") {
        return Ok(());
    }
    let Some(def) = super::schemas::definition_name(r) else {
        return Ok(());
    };
    let unknown = super::schemas::unknown_fields(&def, obj);
    if unknown.is_empty() {
        return Ok(());
    }
    let fields: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    Err(ApiError::bad_request(format!(
        "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
        fields.join(", "),
        kind = r.kind,
        version = r.version,
    )))
}

/// A whole object in: created (POST, and server-side apply of an object
/// that does not exist yet: 201), or applied over the existing one
/// (server-side apply: 200), by the same admission `up` and lab files go
/// through (`lab::load_str`, `objects::apply`).
impl Writer<'_> {
    async fn admit(
        &self,
        t: &Target,
        q: &HashMap<String, String>,
        mut obj: Value,
        mode: Mode,
    ) -> Result<(u16, Value), ApiError> {
        let r = t.resource;
        let kind = writable(t)?;
        not_made_here(kind)?;
        if kind == "replicaset" {
            return Err(ApiError::method_not_allowed(
            "replicasets.apps: netlab makes ReplicaSets for Deployments only; create a Deployment",
        ));
        }
        if obj["kind"].as_str().is_some_and(|k| k != r.kind) {
            return Err(ApiError::bad_request(format!(
                "the kind of the object ({}) is not {} (the resource of the request)",
                obj["kind"], r.kind
            )));
        }
        strict(r, q, &obj)?;
        let ns = in_namespace(t, &mut obj)?;
        if !r.namespaced {
            // Cluster-wide objects have no namespace (the store's key is "").
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("namespace");
            }
        }
        obj = with_type(r, obj);
        if let (Mode::Apply, Some(n)) = (mode, &t.name) {
            match obj["metadata"]["name"].as_str() {
                Some(m) if m != n => {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({m}) does not match the name on the URL ({n})"
                    )))
                }
                _ => obj["metadata"]["name"] = n.clone().into(),
            }
        }
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        if name.is_empty() {
            return Err(invalid(
                r,
                "",
                "metadata.name: Required value: name is required".into(),
            ));
        }
        if r.namespaced && !self.store.snapshot().state.has_namespace(&ns) {
            // kube-apiserver's NamespaceLifecycle admission.
            return Err(ApiError::not_found("namespaces", &ns));
        }
        if r.namespaced && self.store.snapshot().state.terminating(&ns) {
            // kube-apiserver's NamespaceLifecycle admission.
            return Err(ApiError {
                details: json!({"name": name, "group": r.group, "kind": r.plural}),
                ..ApiError::new(
                    403,
                    "Forbidden",
                    format!(
                        "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        r.qualified()
                    ),
                )
            });
        }
        // The lab files' parser checks it as `up` and `apply -f` do.
        let yaml = serde_yaml_ng::to_string(&obj).expect("YAML serializes");
        let at = format!("{}/{name}", r.plural);
        let spec = crate::lab::load_str(std::path::Path::new(&at), &yaml, &Default::default())
            .map_err(|e| invalid(r, &name, e.to_string()))?;
        if dry_run(q) {
            return Ok((201, obj));
        }
        let target = objects::Target {
            kind,
            namespace: &ns,
            name: &name,
        };
        // Who owns which fields: an apply conflicts with other managers'
        // fields it would change (unless forced); a create owns what it set.
        let now = chrono::Utc::now();
        let manager = field_manager(q);
        let live = stored(self.store, r, &target).ok();
        let owners = match (mode, &live) {
            (Mode::Apply, _) => managed::apply(
                &entries(live.as_ref()),
                live.as_ref(),
                &obj,
                &manager,
                &r.group_version(),
                super::request::flag(q, "force"),
                now,
            )
            .map_err(|c| apply_conflicts(r, &name, &c))?,
            (_, _) => managed::update(&[], None, &obj, &manager, &r.group_version(), None, now),
        };
        let created = self
            .change(|st| {
                let lines = objects::apply(st, &spec, mode, now, &mut rand::rng()).map_err(
                    |e| match e {
                        ObjectError::Forbidden(m) => ControllerError::Forbidden(m),
                        e => ControllerError::Object(e.to_string()),
                    },
                )?;
                if let Some(m) = objects::meta_mut(st, &target) {
                    m.managed_fields = Some(owners);
                }
                Ok(lines.iter().any(|l| l.ends_with(" created")))
            })
            .map_err(|e| controller_error(r, &name, e))?;
        let out = stored(self.store, r, &target)?;
        Ok((if created { 201 } else { 200 }, out))
    }
}

/// The patch type a PATCH's Content-Type names.
fn patch_type(content_type: &str) -> Result<Option<PatchType>, ApiError> {
    Ok(match content_type.split(';').next().unwrap_or("").trim() {
        "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
        "application/merge-patch+json" => Some(PatchType::Merge),
        "application/json-patch+json" => Some(PatchType::Json),
        // Server-side apply: the applied configuration merged in.
        "application/apply-patch+yaml" => None,
        other => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("the body of the request was in an unknown format ({other}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"),
            ))
        }
    })
}

/// An autoscaling/v1 Scale of a Deployment or ReplicaSet.
pub fn scale_of(dep: &Value) -> Value {
    let labels = dep["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": dep["metadata"]["name"],
            "namespace": dep["metadata"]["namespace"],
            "uid": dep["metadata"]["uid"],
            "creationTimestamp": dep["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": dep["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": dep["status"]["replicas"].as_i64().unwrap_or(0), "selector": labels},
    })
}

impl Writer<'_> {
    /// PATCH and PUT: the stored object changed by `edit` (which gets the
    /// object, or its Scale for the `scale` subresource).
    async fn update(
        &self,
        t: &Target,
        q: &HashMap<String, String>,
        edit: Edit,
    ) -> Result<(u16, Value), ApiError> {
        let r = t.resource;
        let kind = writable(t)?;
        let name = t
            .name
            .clone()
            .ok_or_else(|| ApiError::method_not_allowed("a collection"))?;
        if let (Edit::Apply(cfg), None) = (&edit, &t.subresource) {
            return self.admit(t, q, cfg.clone(), Mode::Apply).await;
        }
        let ns = t.namespace.clone().unwrap_or_else(|| "default".into());
        let target = objects::Target {
            kind,
            namespace: &ns,
            name: &name,
        };
        let status = t.subresource.as_deref() == Some("status") && r.plural == "pods";
        let scale = match t.subresource.as_deref() {
            None => false,
            Some("scale") if matches!(r.plural, "deployments" | "replicasets") => true,
            Some("status") if status => false,
            Some(s) => {
                return Err(ApiError::method_not_allowed(&format!(
                    "{}/{s}: not served yet",
                    r.qualified()
                )))
            }
        };
        let dry = dry_run(q);
        // A strict refusal found in the store's change, kept apart from the
        // Invalid answers the store's own errors become.
        let mut refused = None;
        let manager = field_manager(q);
        let out = self
            .change(|st| {
                let now = chrono::Utc::now();
                let err = |m: String| ControllerError::Object(m);
                let before = objects::get_json(st, &target).map_err(|e| err(e.to_string()))?;
                if scale {
                    let mut s = scale_of(&before);
                    edit.apply(&mut s).map_err(err)?;
                    let replicas = s["spec"]["replicas"]
                        .as_i64()
                        .ok_or_else(|| err("spec.replicas: Required value".into()))?;
                    if !dry {
                        if kind == "replicaset" {
                            objects::scale_replica_set(st, &ns, &name, replicas as i32)
                        } else {
                            objects::scale(st, &ns, &name, replicas as i32, now, &mut rand::rng())
                        }
                        .map_err(|e| err(e.to_string()))?;
                    }
                    let after = objects::get_json(st, &target).map_err(|e| err(e.to_string()))?;
                    let owners = managed::update(
                        &entries(Some(&before)),
                        Some(&before),
                        &after,
                        &manager,
                        &r.group_version(),
                        Some("scale"),
                        now,
                    );
                    if let Some(m) = objects::meta_mut(st, &target) {
                        m.managed_fields = Some(owners);
                    }
                    return Ok(scale_of(&after));
                }
                let mut value = before.clone();
                edit.apply(&mut value).map_err(err)?;
                // Optimistic concurrency: an update that names a resourceVersion
                // is based on that version, and refused if the object moved on.
                let based_on = value["metadata"]["resourceVersion"].as_str().unwrap_or("");
                if !based_on.is_empty() && based_on != before["metadata"]["resourceVersion"] {
                    refused = Some(conflict(r, &name));
                    return Err(err("conflict".into()));
                }
                if let Err(e) = strict(r, q, &value) {
                    let why = e.message.clone();
                    refused = Some(e);
                    return Err(err(why));
                }
                if dry {
                    return Ok(value);
                }
                if status {
                    // What the kubelet reports: only the status changes.
                    let s = serde_json::from_value(value["status"].clone())
                        .map_err(|e| err(format!("status: {e}")))?;
                    if let Some(mut p) = st.pods.iter_mut().find(|p| {
                        p.metadata.name.as_deref() == Some(name.as_str())
                            && crate::cluster::state::namespace(&p.metadata) == ns
                    }) {
                        p.status = Some(s);
                    }
                    return objects::get_json(st, &target).map_err(|e| err(e.to_string()));
                }
                if value != before {
                    let owners = managed::update(
                        &entries(Some(&before)),
                        Some(&before),
                        &value,
                        &manager,
                        &r.group_version(),
                        None,
                        now,
                    );
                    objects::update_json(st, &target, value, "patched", now, &mut rand::rng())
                        .map_err(|e| err(e.to_string()))?;
                    if let Some(m) = objects::meta_mut(st, &target) {
                        m.managed_fields = Some(owners);
                    }
                }
                objects::get_json(st, &target).map_err(|e| err(e.to_string()))
            })
            .map_err(|e| {
                refused
                    .take()
                    .unwrap_or_else(|| controller_error(r, &name, e))
            })?;
        if dry {
            return Ok((200, if scale { out } else { with_type(r, out) }));
        }
        let now = stored(self.store, r, &target)?;
        Ok((200, if scale { scale_of(&now) } else { now }))
    }
}

/// What a PATCH or PUT does to the object.
pub enum Edit {
    Patch(PatchType, String),
    /// Server-side apply: the configuration applied as `netlab apply` and
    /// lab files apply it (no managedFields yet); of a `scale`, merged in.
    Apply(Value),
    Replace(Value),
}

impl Edit {
    pub fn from_request(
        method: &hyper::Method,
        content_type: &str,
        body: &[u8],
    ) -> Result<Edit, ApiError> {
        if method == hyper::Method::PUT {
            return parse_body(content_type, body).map(Edit::Replace);
        }
        let text = String::from_utf8(body.to_vec())
            .map_err(|_| ApiError::bad_request("the patch is not UTF-8 text"))?;
        Ok(match patch_type(content_type)? {
            Some(t) => Edit::Patch(t, text),
            None => Edit::Apply(parse_body("application/yaml", body)?),
        })
    }

    fn apply(&self, v: &mut Value) -> Result<(), String> {
        match self {
            Edit::Patch(t, p) => patch::apply(v, p, *t),
            Edit::Apply(cfg) => patch::apply(v, &cfg.to_string(), PatchType::Merge),
            Edit::Replace(new) => {
                let mut new = new.clone();
                // kubectl sends what it read; the server keeps identity and status.
                new["metadata"]["uid"] = v["metadata"]["uid"].clone();
                new["metadata"]["creationTimestamp"] = v["metadata"]["creationTimestamp"].clone();
                if new
                    .get("status")
                    .is_none_or(|s| s.as_object().is_some_and(|o| o.is_empty()))
                {
                    new["status"] = v["status"].clone();
                }
                *v = new;
                Ok(())
            }
        }
    }
}

/// The propagation policy of a DELETE: the query's, else the body's
/// DeleteOptions (kubectl sends `{"propagationPolicy":"Background"}`).
/// A DELETE's options: in its body (DeleteOptions) or its query.
fn delete_options(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(Value::Null)
    } else {
        parse_body("application/json", body)
    }
}

/// A DELETE's `gracePeriodSeconds`, if it has one (`kubectl delete
/// --grace-period=N`; `--now` is 1, `--force` 0).
fn grace_period(q: &HashMap<String, String>, body: &[u8]) -> Result<Option<i64>, ApiError> {
    let opts = delete_options(body)?;
    let given = match q.get("gracePeriodSeconds") {
        Some(v) => Some(v.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!("gracePeriodSeconds: not a number: {v:?}"))
        })?),
        None => opts["gracePeriodSeconds"].as_i64(),
    };
    Ok(given.map(|g| g.max(0)))
}

fn propagation(q: &HashMap<String, String>, body: &[u8]) -> Result<Propagation, ApiError> {
    let opts = delete_options(body)?;
    let policy = q
        .get("propagationPolicy")
        .map(String::as_str)
        .or(opts["propagationPolicy"].as_str());
    let orphan = q
        .contains_key("orphanDependents")
        .then(|| super::request::flag(q, "orphanDependents"))
        .or(opts["orphanDependents"].as_bool());
    Propagation::parse(policy, orphan).map_err(|m| ApiError {
        details: json!({"causes": [{"reason": "FieldValueNotSupported", "message": m}]}),
        ..ApiError::new(422, "Invalid", m)
    })
}

impl Writer<'_> {
    /// DELETE: the object goes (a Deployment with its ReplicaSets and their
    /// pods, unless `propagationPolicy` is Orphan; a pod after its containers
    /// stop, within its grace period); the answer is kube-apiserver's: the
    /// pod going away, else a success Status.
    async fn delete(
        &self,
        t: &Target,
        q: &HashMap<String, String>,
        body: &[u8],
    ) -> Result<(u16, Value), ApiError> {
        let r = t.resource;
        let kind = writable(t)?;
        not_made_here(kind)?;
        let name = t.name.clone().ok_or_else(|| {
            ApiError::method_not_allowed(&format!("deletecollection of {}", r.qualified()))
        })?;
        let ns = t.namespace.clone().unwrap_or_else(|| "default".into());
        let propagation = propagation(q, body)?;
        let grace = grace_period(q, body)?;
        if dry_run(q) {
            let snapshot_target = objects::Target {
                kind,
                namespace: &ns,
                name: &name,
            };
            stored(self.store, r, &snapshot_target)?;
        } else {
            self.change(|st| {
                objects::delete_with(st, kind, &ns, &name, propagation, chrono::Utc::now())
                    .map_err(|e| ControllerError::Object(e.to_string()))?;
                if kind == "pod" {
                    objects::grace(st, &ns, &name, grace);
                }
                Ok(())
            })
            .map_err(|e| controller_error(r, &name, e))?;
            // A pod goes gracefully, a namespace once it is empty:
            // kube-apiserver answers the object as it is now, with its
            // deletionTimestamp (and kubectl waits for its uid to go).
            if kind == "pod" || kind == "namespace" {
                let target = objects::Target {
                    kind,
                    namespace: &ns,
                    name: &name,
                };
                if let Ok(pod) = stored(self.store, r, &target) {
                    return Ok((200, pod));
                }
            }
        }
        Ok((
            200,
            json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name, "group": r.group, "kind": r.plural},
            }),
        ))
    }
}

impl Writer<'_> {
    /// POST `pods/NAME/eviction` (`kubectl drain`): the pod is deleted, as
    /// a DELETE with the Eviction's `deleteOptions` would. kube-apiserver
    /// first asks the PodDisruptionBudgets that select the pod; a lab has
    /// none, so every eviction is allowed (201, a success Status).
    async fn evict(
        &self,
        t: &Target,
        q: &HashMap<String, String>,
        eviction: &Value,
    ) -> Result<(u16, Value), ApiError> {
        let name = t.name.clone().unwrap_or_default();
        let kind = eviction["kind"].as_str().unwrap_or("Eviction");
        let version = eviction["apiVersion"].as_str().unwrap_or("policy/v1");
        if kind != "Eviction" || !matches!(version, "policy/v1" | "policy/v1beta1") {
            return Err(ApiError::bad_request(format!(
                "{kind} in version \"{version}\" cannot be handled as a Eviction"
            )));
        }
        match eviction["metadata"]["name"].as_str() {
            Some(n) if n != name => {
                return Err(ApiError::bad_request(format!(
                    "name in URL does not match name in Eviction object ({n} vs {name})"
                )))
            }
            _ => {}
        }
        let options = &eviction["deleteOptions"];
        let body = if options.is_object() {
            options.to_string().into_bytes()
        } else {
            Vec::new()
        };
        let pod = Target {
            subresource: None,
            ..t.clone()
        };
        self.delete(&pod, q, &body).await?;
        Ok((
            201,
            json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "code": 201,
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_and_patch_types() {
        assert_eq!(
            parse_body("application/json", br#"{"a":1}"#).unwrap()["a"],
            1
        );
        assert_eq!(parse_body("application/yaml", b"a: 1\n").unwrap()["a"], 1);
        assert_eq!(
            parse_body("application/vnd.kubernetes.protobuf", b"k8s\0")
                .unwrap_err()
                .code,
            415
        );
        assert!(parse_body("application/json", b"{nope").is_err());
        assert_eq!(
            patch_type("application/strategic-merge-patch+json").unwrap(),
            Some(PatchType::Strategic)
        );
        assert_eq!(patch_type("application/apply-patch+yaml").unwrap(), None);
        assert_eq!(patch_type("text/plain").unwrap_err().code, 415);
    }

    #[test]
    fn unknown_fields_warn_by_default_and_fail_when_strict() {
        let svc = super::super::resources::find("", "v1", "services").unwrap();
        let t = Target {
            resource: svc,
            namespace: Some("default".into()),
            name: None,
            subresource: None,
        };
        let body = json!({"metadata": {"name": "s"}, "spec": {"portz": []}});
        let q = |v: Option<&str>| -> HashMap<String, String> {
            v.map(|v| [("fieldValidation".to_string(), v.to_string())].into())
                .unwrap_or_default()
        };
        let create = |v| Op::Create(t.clone(), q(v), body.clone());
        assert_eq!(warnings(&create(None)), ["unknown field \"spec.portz\""]);
        assert_eq!(warnings(&create(Some("Warn"))).len(), 1);
        assert!(warnings(&create(Some("Ignore"))).is_empty());
        assert!(warnings(&create(Some("Strict"))).is_empty());
        let e = strict(svc, &q(Some("Strict")), &body).unwrap_err();
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
        assert_eq!(
            e.message,
            "Service in version \"v1\" cannot be handled as a Service: strict decoding error: unknown field \"spec.portz\""
        );
        assert!(strict(svc, &q(None), &body).is_ok());
        let patch = Op::Update(
            t.clone(),
            q(None),
            Edit::Patch(PatchType::Strategic, r#"{"spec":{"typo":1}}"#.into()),
        );
        assert_eq!(warnings(&patch), ["unknown field \"spec.typo\""]);
    }

    #[test]
    fn scale_reads_replicas_and_selector() {
        let dep = json!({"metadata": {"name": "d", "namespace": "default"},
                         "spec": {"replicas": 2, "selector": {"matchLabels": {"run": "my-nginx"}}},
                         "status": {"replicas": 2}});
        let s = scale_of(&dep);
        assert_eq!(s["spec"]["replicas"], 2);
        assert_eq!(s["status"]["selector"], "run=my-nginx");
        assert_eq!(s["apiVersion"], "autoscaling/v1");
    }
}
