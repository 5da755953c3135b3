//! One request in, one response out: authentication, routing, content
//! negotiation (JSON, or a Table when kubectl asks for one), and the
//! verbs. Reads go to `objects.rs` over a snapshot of the store.

use super::objects::{self, Filter};
use super::request::{self, FieldSelector, Route, Target};
use super::status::ApiError;
use super::{discovery, openapi, writes};
use crate::cluster::Selector;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use serde_json::Value;

/// Who is calling: from the client certificate, or a `Bearer` token.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    /// The lab's admin certificate (`system:masters`).
    Admin,
    /// A ServiceAccount's token: RBAC decides what it may do.
    Account(super::rbac::User),
}

impl Caller {
    pub fn user(&self) -> super::rbac::User {
        match self {
            Caller::Admin => super::rbac::User::admin(),
            Caller::Account(u) => u.clone(),
        }
    }
}

/// The request's `Authorization: Bearer` token, if it has one.
fn bearer(req: &Request<Incoming>) -> Option<String> {
    let v = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// Whom the request asks to act as (`kubectl --as/--as-group/--as-uid`,
/// a kubeconfig's `as-user-extra`).
fn impersonation(req: &Request<Incoming>) -> super::rbac::Impersonation {
    let values = |name: &str| {
        req.headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let mut extra = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (name, value) in req.headers() {
        if let (Some(key), Ok(v)) = (
            name.as_str().strip_prefix("impersonate-extra-"),
            value.to_str(),
        ) {
            // The key is percent-encoded (a header name cannot hold `/`),
            // path-style as client-go writes it: `+` is itself.
            extra
                .entry(request::unescape(key))
                .or_default()
                .push(v.to_string());
        }
    }
    super::rbac::Impersonation {
        user: values("impersonate-user").into_iter().next(),
        groups: values("impersonate-group"),
        uid: values("impersonate-uid").into_iter().next(),
        extra,
    }
}

/// The user a token names (see `rbac::authenticate`).
fn token_user(ctx: &Ctx, token: &str) -> Result<super::rbac::User, String> {
    let keys = super::tokens::for_lab(&ctx.lab).ok_or("the lab has no token key")?;
    let snapshot = ctx.store.snapshot();
    super::rbac::authenticate(
        &keys.issuer,
        &snapshot.state,
        token,
        chrono::Utc::now().timestamp(),
    )
}

pub struct Ctx {
    pub lab: String,
    /// `host:port` as clients reach it (for `/api`'s serverAddress).
    pub server_address: String,
    pub store: crate::store::ObjectStore,
    /// Writes go to the one task that makes them, one at a time.
    pub writer: tokio::sync::mpsc::Sender<writes::Request>,
    /// How far the lab's control loop has got.
    pub settled: tokio::sync::watch::Receiver<crate::controller::settled::Settled>,
    /// The lab's page: its links and sessions (`crate::ui`).
    pub ui: std::sync::Arc<crate::ui::Sessions>,
}

/// A response body: whole, or a stream (watches).
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::convert::Infallible>;

pub(super) const JSON: &str = "application/json";
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

fn respond(code: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("Content-Type", content_type)
        .header("Cache-Control", "no-cache, private")
        .body(Full::new(body.into()).boxed_unsync())
        .expect("a valid response")
}

pub(super) fn json(code: u16, content_type: &str, v: &Value) -> Response<Body> {
    respond(
        code,
        content_type,
        serde_json::to_vec(v).expect("JSON serializes"),
    )
}

fn error(e: &ApiError) -> Response<Body> {
    json(e.code, JSON, &e.to_json())
}

pub async fn handle(req: Request<Incoming>, ctx: &Ctx, caller: Option<Caller>) -> Response<Body> {
    let started = std::time::Instant::now();
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let resp = match serve(req, ctx, caller).await {
        Ok(r) => r,
        Err(e) => error(&e),
    };
    tracing::debug!(%method, path, code = resp.status().as_u16(), elapsed = ?started.elapsed(), "api");
    resp
}

/// netlab's own: waits until the lab's control loop has acted on every
/// change up to `revision` (default: the store's now), and with `quiet`
/// until no pod is being removed either, at most `timeoutSeconds`
/// (default 120); answers the errors it met on the way.
async fn settled(query: Option<&str>, ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let q = request::query(query);
    let number = |k: &str| q.get(k).and_then(|v| v.parse::<u64>().ok());
    let revision = number("revision").unwrap_or_else(|| ctx.store.snapshot().revision);
    let timeout = std::time::Duration::from_secs(number("timeoutSeconds").unwrap_or(120));
    let mut rx = ctx.settled.clone();
    let quiet = request::flag(&q, "quiet");
    match crate::controller::settled::wait(&mut rx, revision, quiet, timeout).await {
        Some(errors) => Ok(json(
            200,
            JSON,
            &serde_json::json!({"revision": revision, "errors": errors}),
        )),
        None => Err(ApiError::new(
            504,
            "Timeout",
            format!(
                "the lab's process has not acted on revision {revision} after {}s",
                timeout.as_secs()
            ),
        )),
    }
}

/// The answers that are not stored objects (`api::rbac`): the reviews and
/// a ServiceAccount's token. None: `t` is not one of them.
fn answered(
    ctx: &Ctx,
    caller: &Caller,
    t: &Target,
    content_type: &str,
    body: &[u8],
) -> Option<Result<(u16, Value), ApiError>> {
    use super::rbac;
    let plural = t.resource.plural;
    let token = t.subresource.as_deref() == Some("token");
    if !token && !t.resource.answered() {
        return None;
    }
    let answer = || {
        let user = &caller.user();
        let body = writes::parse_body(content_type, body)?;
        let snapshot = ctx.store.snapshot();
        let st = &snapshot.state;
        let keys = || {
            super::tokens::for_lab(&ctx.lab)
                .ok_or_else(|| ApiError::internal("the lab has no token key"))
        };
        let now = chrono::Utc::now();
        match plural {
            _ if token => rbac::token_request(&keys()?.issuer, st, t, &body, now),
            "selfsubjectaccessreviews" => rbac::review(st, user, &body),
            "subjectaccessreviews" => rbac::subject_review(st, &body),
            "localsubjectaccessreviews" => {
                let ns = t.namespace.as_deref().unwrap_or("default");
                rbac::local_subject_review(st, &body, ns)
            }
            "selfsubjectrulesreviews" => Ok(rbac::rules_review(st, user, &body)),
            "selfsubjectreviews" => Ok(rbac::self_subject_review(user)),
            "tokenreviews" => Ok(rbac::token_review(
                &keys()?.issuer,
                st,
                &body,
                now.timestamp(),
            )),
            other => Err(ApiError::internal(format!("{other}: no answer for it"))),
        }
    };
    Some(answer())
}

async fn serve(
    req: Request<Incoming>,
    ctx: &Ctx,
    caller: Option<Caller>,
) -> Result<Response<Body>, ApiError> {
    let accept = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    // A certificate the lab's CA signed, else a token the lab signed; a
    // token that fails is a 401 whatever the path, as kube-apiserver's.
    let caller = match (caller, bearer(&req)) {
        (Some(c), _) => Some(c),
        (None, Some(token)) => match token_user(ctx, &token) {
            Ok(u) => Some(Caller::Account(u)),
            Err(why) => {
                tracing::debug!(why, "api: token refused");
                return Err(refuse(req, ApiError::unauthorized()).await);
            }
        },
        (None, None) => None,
    };
    let asked = impersonation(&req);
    let caller = match caller {
        Some(c) if asked != super::rbac::Impersonation::default() => {
            let impersonated =
                super::rbac::impersonate(&ctx.store.snapshot().state, c.user(), asked);
            match impersonated {
                Ok(user) => Some(Caller::Account(user)),
                Err(e) => return Err(refuse(req, e).await),
            }
        }
        c => c,
    };
    if req.uri().path() == crate::controller::settled::PATH && caller == Some(Caller::Admin) {
        return settled(req.uri().query(), ctx).await;
    }
    if req.uri().path() == crate::ui::TOKEN_PATH
        && caller == Some(Caller::Admin)
        && req.method() == Method::POST
    {
        // netlab's own: a one-time link to the lab's page.
        return match ctx.ui.mint() {
            Some(url) => Ok(json(201, JSON, &serde_json::json!({ "url": url }))),
            None => Err(ApiError::new(
                503,
                "ServiceUnavailable",
                "the lab's process does not serve its page",
            )),
        };
    }
    if caller == Some(Caller::Admin) && super::drills::is_drill(req.uri().path()) {
        // netlab's own: the failure drills.
        return super::drills::serve(req, ctx).await;
    }
    // Both an unknown path and an unknown resource are kube-apiserver's 404.
    let route = match request::route(req.uri().path()) {
        Ok(r) => r,
        Err(_) => return Err(refuse(req, ApiError::no_route()).await),
    };
    // kube-apiserver lets anyone read its version and health
    // (system:public-info-viewer); everything else needs credentials.
    match route {
        Route::Version => return Ok(json(200, JSON, &discovery::version())),
        Route::Health => return Ok(respond(200, "text/plain; charset=utf-8", b"ok".to_vec())),
        _ if caller.is_none() => return Err(refuse(req, ApiError::unauthorized()).await),
        _ => {}
    }
    let Some(caller) = caller else {
        return Err(refuse(req, ApiError::unauthorized()).await);
    };
    if let Caller::Account(user) = &caller {
        let attrs = super::rbac::attributes(
            &route,
            req.method(),
            req.uri().path(),
            &request::query(req.uri().query()),
        );
        if super::rbac::decide(&ctx.store.snapshot().state, user, &attrs).is_none() {
            return Err(refuse(req, super::rbac::forbidden(user, &attrs)).await);
        }
    }
    let mut q = request::query(req.uri().query());
    if !q.contains_key("fieldManager") {
        // kube-apiserver's default manager: the User-Agent up to its '/'.
        let agent = req
            .headers()
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown");
        let manager = agent.split('/').next().unwrap_or("unknown").trim();
        q.insert("fieldManager".into(), manager.to_string());
    }
    if let Route::Object(t) = &route {
        if super::streams::is_stream(t) {
            return super::streams::serve(req, ctx, t, &q).await;
        }
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    if let Route::Object(t) = &route {
        if method != Method::GET {
            let body = read_body(req.into_body()).await?;
            if method == Method::POST {
                if let Some(answer) = answered(ctx, &caller, t, &content_type, &body) {
                    let (code, v) = answer?;
                    return Ok(json(code, JSON, &v));
                }
            }
            let op = match method {
                Method::POST
                    if t.resource.plural == "pods"
                        && t.name.is_some()
                        && t.subresource.as_deref() == Some("eviction") =>
                {
                    let eviction = writes::parse_body(&content_type, &body)?;
                    writes::Op::Evict(t.clone(), q, eviction)
                }
                Method::POST if t.name.is_none() => {
                    let obj = writes::parse_body(&content_type, &body)?;
                    decoded(t, &obj)?;
                    named(t, &obj)?;
                    writes::Op::Create(t.clone(), q, obj)
                }
                Method::PUT | Method::PATCH => {
                    let edit = writes::Edit::from_request(&method, &content_type, &body)?;
                    edited(t, &edit)?;
                    writes::Op::Update(t.clone(), q, edit)
                }
                Method::DELETE => writes::Op::Delete(t.clone(), q, body),
                m => return Err(ApiError::method_not_allowed(m.as_str())),
            };
            let warnings = writes::warnings(&op);
            let (reply, answer) = tokio::sync::oneshot::channel();
            ctx.writer
                .send(writes::Request { op, reply })
                .await
                .map_err(|_| ApiError::internal("the lab's process is stopping"))?;
            let (code, v) = answer
                .await
                .map_err(|_| ApiError::internal("the lab's process dropped the write"))??;
            let mut resp = json(code, JSON, &v);
            for w in warnings {
                // kubectl prints each as `Warning: <text>`.
                let value = format!("299 - {}", Value::String(w));
                if let Ok(h) = hyper::header::HeaderValue::from_str(&value) {
                    resp.headers_mut().append("Warning", h);
                }
            }
            return Ok(resp);
        }
    }
    match (&route, &method) {
        (Route::CoreVersions | Route::Groups, &Method::GET) => {
            let core = route == Route::CoreVersions;
            Ok(match discovery::wanted_aggregated(&accept) {
                Some(v) => {
                    let api_version = format!("apidiscovery.k8s.io/{v}");
                    let ct = format!(
                        "application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"
                    );
                    json(200, &ct, &discovery::aggregated(core, &api_version))
                }
                None if core => json(200, JSON, &discovery::core_versions(&ctx.server_address)),
                None => json(200, JSON, &discovery::groups()),
            })
        }
        (Route::Resources { group, version }, &Method::GET) => {
            Ok(json(200, JSON, &discovery::resource_list(group, version)))
        }
        (Route::OpenApi, &Method::GET) => match path.trim_end_matches('/') {
            // client-go asks for the protobuf; JSON for anyone else.
            "/openapi/v2" if openapi::wants_protobuf(&accept) => Ok(respond(
                200,
                super::openapi_v2::CONTENT_TYPE,
                openapi::v2_protobuf(),
            )),
            "/openapi/v2" => Ok(respond(200, JSON, openapi::v2_json())),
            "/openapi/v3" => Ok(json(200, JSON, &openapi::index())),
            p => p
                .strip_prefix("/openapi/v3/")
                .and_then(openapi::document)
                .map(|d| respond(200, JSON, d))
                .ok_or_else(ApiError::no_route),
        },
        (Route::Object(t), &Method::GET) => get(ctx, t, &q, &accept).await,
        (_, m) => Err(ApiError::method_not_allowed(m.as_str())),
    }
}

/// A watch: newline-delimited events until the client goes (or
/// `timeoutSeconds` pass).
fn watch_response(
    ctx: &Ctx,
    t: &Target,
    q: &std::collections::HashMap<String, String>,
    labels: Selector,
    fields: FieldSelector,
    table: bool,
) -> Response<Body> {
    use futures::StreamExt;
    let filter = super::watch::OwnedFilter {
        namespace: t.namespace.clone(),
        name: t.name.clone(),
        labels,
        fields,
    };
    let flag = |k: &str| super::request::flag(q, k);
    let rv = q.get("resourceVersion").map(String::as_str).unwrap_or("");
    let start = match super::watch::start(rv, flag("sendInitialEvents")) {
        Ok(s) => s,
        Err(m) => return error(&ApiError::bad_request(m)),
    };
    let opts = super::watch::Options {
        start,
        table,
        bookmarks: flag("allowWatchBookmarks"),
        initial_events_end: flag("sendInitialEvents"),
    };
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(1800);
    let events = super::watch::stream(ctx.store.clone(), t.clone(), filter, opts)
        .take_until(tokio::time::sleep(std::time::Duration::from_secs(timeout)))
        .map(|line| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(line))));
    Response::builder()
        .status(200)
        .header("Content-Type", if table { TABLE } else { JSON })
        .header("Cache-Control", "no-cache, private")
        .body(http_body_util::StreamBody::new(events).boxed_unsync())
        .expect("a valid response")
}

/// The request body, refused past kube-apiserver's 3 MiB.
pub(super) async fn read_body(body: Incoming) -> Result<Vec<u8>, ApiError> {
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(body, writes::MAX_BODY);
    match limited.collect().await {
        Ok(b) => Ok(b.to_bytes().to_vec()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::too_large(writes::MAX_BODY))
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "reading the request body: {e}"
        ))),
    }
}

/// kube-apiserver decodes a body into the URL's resource: an object of
/// another kind or version is refused before anything else looks at it
/// (`transformDecodeError`'s 400). A missing kind or apiVersion takes the
/// URL's, as the decoder's default. Subresources (Scale, …) are not checked.
fn decoded(t: &Target, obj: &Value) -> Result<(), ApiError> {
    let r = t.resource;
    if t.subresource.is_some() {
        return Ok(());
    }
    let gv = r.group_version();
    let kind = obj["kind"]
        .as_str()
        .filter(|k| !k.is_empty())
        .unwrap_or(r.kind);
    let api_version = obj["apiVersion"]
        .as_str()
        .filter(|v| !v.is_empty())
        .unwrap_or(&gv);
    if kind == r.kind && api_version == gv {
        return Ok(());
    }
    let version = api_version.rsplit('/').next().unwrap_or(api_version);
    let served = super::resources::RESOURCES
        .iter()
        .any(|o| o.kind == kind && o.group_version() == api_version);
    let why = if served {
        format!(
            "converting ({version}.{kind}) to ({}): unknown conversion",
            r.kind
        )
    } else {
        format!("no kind \"{kind}\" is registered for version \"{api_version}\"")
    };
    Err(ApiError::bad_request(format!(
        "{kind} in version \"{version}\" cannot be handled as a {}: {why}",
        r.kind
    )))
}

/// A new object's name must be one its kind allows (kube-apiserver's
/// `ValidateObjectMeta`: 422 Invalid, with the field in the cause). A body
/// with only `generateName` is named by the store.
fn named(t: &Target, obj: &Value) -> Result<(), ApiError> {
    let r = t.resource;
    if t.subresource.is_some() {
        return Ok(());
    }
    let Some(name) = obj["metadata"]["name"].as_str().filter(|n| !n.is_empty()) else {
        return Ok(());
    };
    let causes: Vec<(&str, String)> = crate::cluster::names::NameRule::of(r.plural)
        .check(name)
        .into_iter()
        .map(|m| ("metadata.name", format!("Invalid value: \"{name}\": {m}")))
        .collect();
    if causes.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid(r.kind, r.group, name, &causes))
}

/// What kube-apiserver refuses in a PUT or PATCH before it reads the
/// stored object: a replacement of another kind, or whose name or
/// namespace is not the URL's (`checkName`, 400); a patch that does not
/// decode as its type's JSON (an object, or a JSON patch's list of
/// operations: 400 `error decoding patch`).
fn edited(t: &Target, edit: &writes::Edit) -> Result<(), ApiError> {
    use crate::cluster::patch::PatchType;
    match edit {
        writes::Edit::Replace(obj) => {
            decoded(t, obj)?;
            if t.subresource.is_some() {
                return Ok(());
            }
            let url = t.name.as_deref().unwrap_or_default();
            match obj["metadata"]["name"].as_str().unwrap_or_default() {
                "" => return Err(ApiError::bad_request("name must be provided")),
                n if n != url => {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({n}) does not match the name on the URL ({url})"
                    )))
                }
                _ => {}
            }
            let ns = t.namespace.as_deref().unwrap_or_default();
            match obj["metadata"]["namespace"].as_str().unwrap_or_default() {
                n if !n.is_empty() && !ns.is_empty() && n != ns => Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                )),
                _ => Ok(()),
            }
        }
        writes::Edit::Apply(obj) => {
            decoded(t, obj)?;
            named(t, &serde_json::json!({"metadata": {"name": t.name}}))
        }
        writes::Edit::Patch(ty, text) => {
            let v: Value = serde_json::from_str(text)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            let shape = match ty {
                PatchType::Json if !v.is_array() => Some("a list of operations"),
                PatchType::Strategic | PatchType::Merge if !v.is_object() => Some("an object"),
                _ => None,
            };
            match shape {
                Some(want) => Err(ApiError::bad_request(format!(
                    "error decoding patch: a {} patch must be {want}",
                    match ty {
                        PatchType::Json => "JSON",
                        PatchType::Merge => "merge",
                        PatchType::Strategic => "strategic merge",
                    }
                ))),
                None => Ok(()),
            }
        }
    }
}

/// An answer to a request refused before its body was read. The body is
/// read and dropped first (up to 256 KiB, as Go's HTTP server does for
/// kube-apiserver): a client still sending it would otherwise lose the
/// answer to a reset stream or connection (curl prints "Stream error in
/// the HTTP/2 framing layer" instead of the 401).
async fn refuse(req: Request<Incoming>, e: ApiError) -> ApiError {
    const DRAIN: usize = 256 * 1024;
    let _ = http_body_util::Limited::new(req.into_body(), DRAIN)
        .collect()
        .await;
    e
}

/// Whether kubectl asked for a Table (it offers the Table first, then
/// plain JSON).
fn wants_table(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| {
        let p: Vec<&str> = first.split(';').map(str::trim).collect();
        p.contains(&"as=Table") && p.contains(&"g=meta.k8s.io")
    })
}

async fn get(
    ctx: &Ctx,
    t: &Target,
    q: &std::collections::HashMap<String, String>,
    accept: &str,
) -> Result<Response<Body>, ApiError> {
    let r = t.resource;
    // `status` reads the object; `scale` its autoscaling/v1 Scale.
    if let (Some(sub @ ("status" | "scale")), Some(name)) = (t.subresource.as_deref(), &t.name) {
        let served = sub == "status" || matches!(r.plural, "deployments" | "replicasets");
        if served && r.subresources.iter().any(|s| s.0 == sub) {
            let filter = Filter {
                namespace: t.namespace.as_deref(),
                name: Some(name),
                ..Default::default()
            };
            let snapshot = ctx.store.snapshot();
            let (items, _) = objects::select(&snapshot.state, r, &filter, chrono::Utc::now(), true);
            let v = objects::one(r, items, name)?;
            return Ok(json(
                200,
                JSON,
                &if sub == "scale" {
                    writes::scale_of(&v)
                } else {
                    v
                },
            ));
        }
    }
    if t.subresource.is_some() {
        return Err(ApiError::method_not_allowed(&format!(
            "{}/{}: not served yet",
            r.qualified(),
            t.subresource.as_deref().unwrap_or_default()
        )));
    }
    let watching = request::flag(q, "watch");
    let labels = Selector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(
        q.get("fieldSelector").map(String::as_str).unwrap_or(""),
        &objects::field_labels(r),
    )
    .map_err(ApiError::bad_request)?;
    if watching {
        return Ok(watch_response(
            ctx,
            t,
            q,
            labels,
            fields,
            wants_table(accept),
        ));
    }
    let filter = Filter {
        namespace: t.namespace.as_deref(),
        name: t.name.as_deref(),
        labels,
        fields,
    };
    // A paged list (kubectl asks for 500 at a time): the next page comes
    // from the same revision, while the store still holds it.
    let page = objects::Page::from_query(q)?;
    let snapshot = match page.continue_at {
        Some((rv, _)) => ctx
            .store
            .snapshot_at(rv)
            .ok_or_else(objects::Page::expired)?,
        None => ctx.store.snapshot(),
    };
    let now = chrono::Utc::now();
    let (mut items, mut table) =
        objects::select(&snapshot.state, r, &filter, now, !wants_table(accept));
    let rv = snapshot.revision.to_string();
    let next = if t.name.is_none() {
        page.cut(&mut items, &mut table.rows, snapshot.revision)
    } else {
        None
    };
    if next.is_some() {
        ctx.store.pin(&snapshot);
    }
    if wants_table(accept) {
        if let Some(name) = &t.name {
            if items.is_empty() {
                return Err(ApiError::not_found(&r.qualified(), name));
            }
        }
        let include = q.get("includeObject").map(String::as_str) != Some("None");
        let mut body = table.to_json(include, &rv);
        next.inspect(|n| n.annotate(&mut body));
        return Ok(json(200, TABLE, &body));
    }
    let body = match &t.name {
        Some(name) => objects::one(r, items, name)?,
        None => {
            let mut l = objects::list(r, items, &rv);
            next.inspect(|n| n.annotate(&mut l));
            l
        }
    };
    Ok(json(200, JSON, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_only_when_asked_first() {
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
        assert!(!wants_table(
            "application/vnd.kubernetes.protobuf,application/json"
        ));
    }
}
