//! The planner's HTTP/JSON API, served beside gRPC on the planner's port (tonic's server takes
//! HTTP/1.1 and HTTP/2 both; gRPC calls go to the `Planner` service, everything else here).
//! The same calls as gRPC, as REST resources:
//!
//! | call | resource |
//! |---|---|
//! | list, deploy | `GET`, `POST /v1/workflows` |
//! | describe, undeploy | `GET`, `DELETE /v1/workflows/{name}` |
//! | invoke (waits) | `POST /v1/workflows/{name}/invoke` |
//! | start an execution | `POST /v1/workflows/{name}/executions` |
//! | list executions | `GET /v1/executions` |
//! | get, cancel one | `GET /v1/executions/{id}`, `POST /v1/executions/{id}/cancel` |
//! | workers | `GET /v1/workers` |
//!
//! Calls under `/v1` need the cluster's token (`Authorization: Bearer …`) when the planner has
//! one; `/v1/openapi.json` (the API's OpenAPI document, made from the handlers below, so the
//! two cannot drift apart) and `/metrics` (OpenMetrics text) do not. Every error is JSON:
//! `{"error": {"code": "NOT_FOUND", "message": "…"}}` with the HTTP status of its gRPC code.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use faasflow_core::plan::Mode;
use faasflow_rpc::auth::Check;
use faasflow_rpc::convert::state::{ExecutionRecord, ExecutionStatus};
use serde::{Deserialize, Serialize};
use tonic::{Code, Status};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::service::PlannerService;
use crate::service::deploy::DeploySource;
use crate::service::executions::ExecutionFilter;
use crate::service::invoke::{Ending, InvokeRequest};

/// Largest request body: a workflow's source or an invocation's JSON input.
pub const MAX_BODY: usize = 4 << 20;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "faasflow planner",
        description = "Deploy workflows, run them (waiting, or as executions found again by id), \
                       cancel them, and see the cluster. The same calls as the planner's gRPC API."
    ),
    modifiers(&BearerToken),
    security(("bearer" = [])),
    tags(
        (name = "workflows", description = "Deployed workflows and their versions"),
        (name = "executions", description = "Workflow runs started without waiting"),
        (name = "cluster", description = "The workers")
    )
)]
struct ApiDoc;

/// The bearer token scheme of every `/v1` call.
struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The `/v1` resources and their OpenAPI document, from the same annotations.
fn api() -> OpenApiRouter<PlannerService> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_workflows, deploy))
        .routes(routes!(describe_workflow, undeploy))
        .routes(routes!(invoke))
        .routes(routes!(start_execution))
        .routes(routes!(list_executions))
        .routes(routes!(get_execution))
        .routes(routes!(get_output))
        .routes(routes!(upload))
        .routes(routes!(cancel_execution))
        .routes(routes!(list_workers))
}

/// The HTTP API of `service`: the `/v1` resources, `/v1/openapi.json` and `/metrics`.
pub fn router(service: PlannerService) -> axum::Router {
    let check = Check::new(service.inner.config.token.clone(), "the planner");
    let (api, doc) = api()
        .route_layer(axum::middleware::from_fn_with_state(check, authorize))
        .with_state(service.clone())
        .split_for_parts();
    let doc: Arc<[u8]> = serde_json::to_vec_pretty(&doc).unwrap_or_default().into();
    api.route(
        "/v1/openapi.json",
        get(move || async move { ([(header::CONTENT_TYPE, "application/json")], doc.to_vec()) }),
    )
    .route(
        "/metrics",
        get(move || async move {
            (
                [(header::CONTENT_TYPE, faasflow_rpc::metrics::CONTENT_TYPE)],
                service.metrics_text(),
            )
        }),
    )
    .fallback(no_route)
    .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

/// The OpenAPI document of [`router`], as JSON.
pub fn openapi_json() -> String {
    serde_json::to_string_pretty(&api().into_openapi()).unwrap_or_default()
}

// ---- errors ---------------------------------------------------------------------------------

/// Every error: what went wrong, with the gRPC code its HTTP status comes from.
#[derive(Debug, Serialize, ToSchema)]
struct ApiError {
    error: ErrorBody,
}

#[derive(Debug, Serialize, ToSchema)]
struct ErrorBody {
    /// The gRPC code, e.g. `NOT_FOUND`, `INVALID_ARGUMENT`, `FAILED_PRECONDITION`.
    code: String,
    /// What went wrong and what to do.
    message: String,
}

/// A failed call, answered as [`ApiError`] with the HTTP status of its code (or one of its
/// own).
#[derive(Debug)]
struct Failure(Status, Option<StatusCode>);

impl From<Status> for Failure {
    fn from(s: Status) -> Self {
        Failure(s, None)
    }
}

/// The HTTP status of a gRPC code (as google.rpc.Code documents them).
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `Code::NotFound` → `NOT_FOUND`.
fn code_name(code: Code) -> String {
    let debug = format!("{code:?}");
    let mut out = String::new();
    for (i, ch) in debug.chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = ApiError {
            error: ErrorBody {
                code: code_name(self.0.code()),
                message: self.0.message().to_owned(),
            },
        };
        (self.1.unwrap_or_else(|| http_status(self.0.code())), Json(body)).into_response()
    }
}

fn bad_request(what: impl std::fmt::Display) -> Failure {
    Status::invalid_argument(what.to_string()).into()
}

/// A body that could not be read: too large (413), or not what was asked for (400).
fn unread_body(status: StatusCode, text: String) -> Failure {
    if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        return Failure(
            Status::invalid_argument(format!("the request body: {text}")),
            Some(status),
        );
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return Failure(
            Status::out_of_range(format!(
                "the request body is larger than the {} MiB allowed; nothing was kept",
                MAX_BODY >> 20
            )),
            Some(StatusCode::PAYLOAD_TOO_LARGE),
        );
    }
    bad_request(format!("the request body: {text}"))
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, Failure> {
    body.map(|Json(t)| t)
        .map_err(|e| unread_body(e.status(), e.body_text()))
}

fn bytes_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Failure> {
    body.map_err(|e| unread_body(e.status(), e.body_text()))
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, Failure> {
    q.map(|Query(t)| t)
        .map_err(|e| bad_request(format!("the query: {}", e.body_text())))
}

fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, Failure> {
    p.map(|Path(t)| t)
        .map_err(|e| bad_request(format!("the path: {}", e.body_text())))
}

async fn no_route(request: Request) -> Failure {
    Failure::from(Status::not_found(format!(
        "there is no {} {} here: the API is under /v1 (its OpenAPI document is /v1/openapi.json)",
        request.method(),
        request.uri().path()
    )))
}

/// Refuses a `/v1` call without the planner's token, as gRPC does.
async fn authorize(State(check): State<Check>, request: Request, next: Next) -> Response {
    let presented = request.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
    match check.check(presented) {
        Ok(()) => next.run(request).await,
        Err(status) => Failure::from(status).into_response(),
    }
}

// ---- workflows ------------------------------------------------------------------------------

/// A deployed workflow.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
struct Workflow {
    name: String,
    /// The last version number given (the next deploy is numbered past it).
    last_version: u64,
    /// It is being undeployed: new invocations are refused.
    undeploying: bool,
    /// Its installed versions, newest first (new invocations take the first).
    versions: Vec<Version>,
}

/// An installed version.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
struct Version {
    version: u64,
    /// `workersp`, `mastersp` or `workersp-remote`.
    mode: String,
    /// The workers whose daemons hold it.
    workers: Vec<String>,
    tasks: u32,
    /// Invocations of it in flight.
    in_flight: u64,
    /// SHA-256 of its plan, hex.
    plan_digest: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
struct Workflows {
    workflows: Vec<Workflow>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn workflow_json(w: crate::service::undeploy::WorkflowSummary) -> Workflow {
    Workflow {
        name: w.name,
        last_version: w.last_version,
        undeploying: w.undeploying,
        versions: w
            .versions
            .into_iter()
            .map(|v| Version {
                version: v.version,
                mode: v.mode.as_str().to_owned(),
                workers: v.workers,
                tasks: v.tasks,
                in_flight: v.in_flight,
                plan_digest: hex(&v.digest),
            })
            .collect(),
    }
}

/// Every deployed workflow, by name.
#[utoipa::path(get, path = "/v1/workflows", tag = "workflows",
    responses((status = 200, body = Workflows), (status = 401, body = ApiError)))]
async fn list_workflows(State(s): State<PlannerService>) -> Json<Workflows> {
    Json(Workflows {
        workflows: s.workflows().into_iter().map(workflow_json).collect(),
    })
}

/// A workflow to deploy, as JSON (or send the YAML itself with `Content-Type:
/// application/yaml`, and these settings in the query).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DeployBody {
    /// The workflow's source (YAML).
    #[serde(default)]
    source: String,
    /// The file it came from, named in errors (and its stem names a workflow whose source
    /// carries no name).
    #[serde(default)]
    file_name: String,
    /// `workersp` (default), `mastersp` or `workersp-remote`.
    #[serde(default)]
    mode: Option<String>,
    /// Plan even when the workflow needs more slots than the cluster has.
    #[serde(default)]
    allow_overcommit: bool,
    /// The directory the `code` of the workflow's Python functions is relative to (absolute,
    /// on the workers); without it their `code` must be absolute.
    #[serde(default)]
    code_dir: String,
}

/// A deploy's settings when the body is the YAML itself.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct DeployQuery {
    /// The file the source came from, named in errors.
    #[serde(default)]
    file_name: String,
    /// `workersp` (default), `mastersp` or `workersp-remote`.
    mode: Option<String>,
    /// Plan even when the workflow needs more slots than the cluster has.
    #[serde(default)]
    allow_overcommit: bool,
    /// The directory the `code` of the workflow's Python functions is relative to.
    #[serde(default)]
    code_dir: String,
}

/// The version a deploy made.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
struct Deployed {
    workflow: String,
    version: u64,
}

fn parse_mode(mode: Option<&str>) -> Result<Mode, Failure> {
    let modes = [Mode::WorkerSp, Mode::MasterSp, Mode::WorkerSpRemote];
    match mode {
        None | Some("") => Ok(Mode::WorkerSp),
        Some(m) => modes.into_iter().find(|x| x.as_str() == m).ok_or_else(|| {
            bad_request(format!(
                "`mode` `{m}` is unknown; one of: {}",
                modes.map(Mode::as_str).join(", ")
            ))
        }),
    }
}

/// Deploys a workflow: a new version, planned for the live workers and installed on them.
#[utoipa::path(post, path = "/v1/workflows", tag = "workflows",
    params(DeployQuery),
    request_body(description = "The workflow as JSON, or its YAML source itself", content(
        (DeployBody = "application/json"),
        (String = "application/yaml")
    )),
    responses(
        (status = 201, body = Deployed, description = "Deployed; `Location` names the workflow"),
        (status = 400, body = ApiError, description = "The source is invalid, or cannot be planned"),
        (status = 413, body = ApiError, description = "Larger than the 4 MiB allowed"),
        (status = 415, body = ApiError, description = "Neither JSON nor YAML"),
        (status = 503, body = ApiError, description = "A worker could not take it")))]
async fn deploy(
    State(s): State<PlannerService>,
    q: Result<Query<DeployQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, HeaderMap, Json<Deployed>), Failure> {
    let body = bytes_body(body)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let d = if content_type.starts_with("application/json") {
        serde_json::from_slice::<DeployBody>(&body).map_err(|e| bad_request(format!("the request body: {e}")))?
    } else if content_type.contains("yaml") || content_type.starts_with("text/") {
        let source = String::from_utf8(body.to_vec()).map_err(|_| bad_request("the workflow's source is not UTF-8"))?;
        let q = query(q)?;
        DeployBody {
            source,
            file_name: q.file_name,
            mode: q.mode,
            allow_overcommit: q.allow_overcommit,
            code_dir: q.code_dir,
        }
    } else {
        return Err(Failure(
            Status::invalid_argument(format!(
                "`Content-Type: {content_type}` is not taken: send JSON (`application/json`) or the YAML itself \
                 (`application/yaml`)"
            )),
            Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ));
    };
    if d.source.is_empty() {
        return Err(bad_request("`source` is empty: send the workflow's YAML"));
    }
    let made = s
        .deploy_source(DeploySource {
            source: d.source,
            file_name: d.file_name,
            default_name: String::new(),
            code_dir: d.code_dir,
            mode: parse_mode(d.mode.as_deref())?,
            allow_overcommit: d.allow_overcommit,
        })
        .await?;
    let mut out = HeaderMap::new();
    if let Ok(v) = format!("/v1/workflows/{}", made.workflow).parse() {
        out.insert(header::LOCATION, v);
    }
    Ok((
        StatusCode::CREATED,
        out,
        Json(Deployed {
            workflow: made.workflow,
            version: made.version,
        }),
    ))
}

/// A workflow in detail.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
struct WorkflowDetail {
    workflow: Workflow,
    /// Its installed versions, newest first.
    versions: Vec<VersionDetail>,
}

/// An installed version in detail.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
struct VersionDetail {
    version: u64,
    /// The source its user deployed (YAML), and its file (empty: kept before sources were).
    source: String,
    file_name: String,
    /// When its source was deployed, and when this version was planned, ms since the Unix
    /// epoch.
    deployed_unix_ms: u64,
    planned_unix_ms: u64,
    /// Where each task runs, in the workflow's order.
    tasks: Vec<TaskPlacement>,
    /// Its edges by data tier (`in-process`, `shared-memory`, `peer`, `remote`).
    edges: std::collections::BTreeMap<String, u32>,
    groups: u32,
    merges: u32,
    /// The critical path's estimated length, ms.
    critical_path_ms: f64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
struct TaskPlacement {
    task: String,
    function: String,
    worker: String,
}

/// A deployed workflow: each version's source, where its tasks run, its edges by tier.
#[utoipa::path(get, path = "/v1/workflows/{name}", tag = "workflows",
    params(("name" = String, Path, description = "The workflow")),
    responses((status = 200, body = WorkflowDetail), (status = 404, body = ApiError)))]
async fn describe_workflow(
    State(s): State<PlannerService>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<WorkflowDetail>, Failure> {
    let (w, versions) = s.describe_workflow(&path(name)?)?;
    Ok(Json(WorkflowDetail {
        workflow: workflow_json(w),
        versions: versions
            .into_iter()
            .map(|v| VersionDetail {
                version: v.version,
                source: v.source,
                file_name: v.file_name,
                deployed_unix_ms: v.deployed_unix_ms,
                planned_unix_ms: v.planned_unix_ms,
                tasks: v
                    .tasks
                    .into_iter()
                    .map(|(task, function, worker)| TaskPlacement { task, function, worker })
                    .collect(),
                edges: v.edges.into_iter().map(|(t, n)| (t.as_str().to_owned(), n)).collect(),
                groups: v.groups,
                merges: v.merges,
                critical_path_ms: v.critical_path_ms,
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct UndeployQuery {
    /// Longest wait for its invocations in flight to end, ms (default: the planner's default
    /// deadline); when they have not ended by then it is not undeployed and serves again.
    drain_ms: Option<u64>,
}

/// What an undeploy removed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
struct Undeployed {
    /// The versions removed, newest first.
    versions: Vec<u64>,
    /// The workers they were dropped from.
    workers: Vec<String>,
    /// Invocations in flight it waited for.
    drained: u64,
}

/// Removes a workflow: new invocations are refused at once, those in flight end, then every
/// version leaves the workers and the planner's state.
#[utoipa::path(delete, path = "/v1/workflows/{name}", tag = "workflows",
    params(("name" = String, Path, description = "The workflow"), UndeployQuery),
    responses((status = 200, body = Undeployed), (status = 404, body = ApiError),
        (status = 400, body = ApiError, description = "Already being undeployed, or its invocations did not end in time")))]
async fn undeploy(
    State(s): State<PlannerService>,
    name: Result<Path<String>, PathRejection>,
    q: Result<Query<UndeployQuery>, QueryRejection>,
) -> Result<Json<Undeployed>, Failure> {
    let name = path(name)?;
    let drain = query(q)?.drain_ms.map(std::time::Duration::from_millis);
    let u = s.undeploy(&name, drain).await?;
    Ok(Json(Undeployed {
        versions: u.versions,
        workers: u.workers,
        drained: u.drained,
    }))
}

// ---- running --------------------------------------------------------------------------------

/// What to run.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RunBody {
    /// The workflow's input: a JSON object of its named inputs (default `{}`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    input: Option<serde_json::Value>,
    /// The version to run (default: the newest).
    version: Option<u64>,
    /// Time limit of the whole run, ms (default: the workflow's `deadline`, else the
    /// planner's).
    #[serde(default)]
    deadline_ms: u64,
    /// For `executions`: a key of the caller's choice (at most 256 bytes); a start with a key
    /// already used answers the execution it started when the request is the same, and is
    /// refused (409) when it is not. The `Idempotency-Key` header does the same.
    #[serde(default)]
    idempotency_key: Option<String>,
    /// Inputs given as uploaded files (`POST /v1/uploads`): input name → upload id.
    #[serde(default)]
    files: std::collections::BTreeMap<String, String>,
}

fn invoke_request(workflow: String, body: &RunBody) -> Result<InvokeRequest, Failure> {
    let input = body.input.clone().unwrap_or_else(|| serde_json::json!({}));
    Ok(InvokeRequest {
        workflow,
        version: body.version,
        input_json: serde_json::to_vec(&input).map_err(|e| bad_request(format!("`input`: {e}")))?,
        deadline_ms: body.deadline_ms,
        fill_staged_scale: None,
        execution: None,
        files: body.files.clone(),
    })
}

/// How an invocation ended.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
struct Invocation {
    invocation_id: u64,
    /// `succeeded`, `failed` or `deadline-exceeded`.
    status: String,
    /// The workflow's output (when it succeeded).
    #[schema(value_type = Option<Object>)]
    output: serde_json::Value,
    /// What went wrong (when it did not succeed).
    error: String,
    /// Where the time went (docs/run-report.md).
    #[schema(value_type = Option<Object>)]
    report: serde_json::Value,
}

fn json_or_null(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or(serde_json::Value::Null)
}

/// Runs a workflow and waits for it: its output or error, and its report. A run that fails
/// is answered 200 with `status` `failed`; errors are calls that could not run.
#[utoipa::path(post, path = "/v1/workflows/{name}/invoke", tag = "workflows",
    params(("name" = String, Path, description = "The workflow")),
    request_body = RunBody,
    responses((status = 200, body = Invocation), (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 415, body = ApiError, description = "The body is not `application/json`"),
        (status = 429, body = ApiError, description = "Too many invocations in flight")))]
async fn invoke(
    State(s): State<PlannerService>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<RunBody>, JsonRejection>,
) -> Result<Json<Invocation>, Failure> {
    let body = json_body(body)?;
    if body.idempotency_key.is_some() {
        return Err(bad_request(
            "`idempotency_key` is for executions (`POST /v1/workflows/{name}/executions`), not invoke",
        ));
    }
    let (a, planner_us) = s.invoke_counted(invoke_request(path(name)?, &body)?).await?;
    let mut report = json_or_null(&a.report_json);
    if let Some(r) = report.as_object_mut() {
        r.insert("planner_us".into(), serde_json::json!(planner_us));
    }
    Ok(Json(Invocation {
        invocation_id: a.invocation_id,
        status: match a.status {
            Ending::Succeeded => "succeeded",
            Ending::Failed => "failed",
            Ending::DeadlineExceeded => "deadline-exceeded",
        }
        .to_owned(),
        output: json_or_null(&a.output_json),
        error: a.error,
        report,
    }))
}

/// A started execution.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
struct Started {
    execution_id: u64,
    /// An earlier start with the same idempotency key made it.
    existing: bool,
}

/// Starts a workflow without waiting: answers the execution's id at once (`Location` names
/// it).
#[utoipa::path(post, path = "/v1/workflows/{name}/executions", tag = "executions",
    params(("name" = String, Path, description = "The workflow"),
        ("Idempotency-Key" = Option<String>, Header, description = "As `idempotency_key`")),
    request_body = RunBody,
    responses(
        (status = 201, body = Started, description = "Started"),
        (status = 200, body = Started, description = "Started earlier with the same idempotency key and request"),
        (status = 409, body = ApiError, description = "The idempotency key started another request"),
        (status = 415, body = ApiError, description = "The body is not `application/json`"),
        (status = 404, body = ApiError)))]
async fn start_execution(
    State(s): State<PlannerService>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Json<RunBody>, JsonRejection>,
) -> Result<(StatusCode, HeaderMap, Json<Started>), Failure> {
    let body = json_body(body)?;
    let header_key = headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| bad_request("the `Idempotency-Key` header is not visible ASCII"))
        })
        .transpose()?;
    let key = match (header_key, &body.idempotency_key) {
        (Some(h), Some(b)) if h != *b => {
            return Err(bad_request(
                "the `Idempotency-Key` header and `idempotency_key` differ; give one",
            ));
        }
        (Some(h), _) => h,
        (None, b) => b.clone().unwrap_or_default(),
    };
    let (id, existing) = s.start_execution(invoke_request(path(name)?, &body)?, key).await?;
    let mut out = HeaderMap::new();
    if let Ok(v) = format!("/v1/executions/{id}").parse() {
        out.insert(header::LOCATION, v);
    }
    let status = if existing { StatusCode::OK } else { StatusCode::CREATED };
    Ok((
        status,
        out,
        Json(Started {
            execution_id: id,
            existing,
        }),
    ))
}

/// An execution.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
struct Execution {
    execution_id: u64,
    workflow: String,
    /// The version asked for (absent: the newest when it started).
    version: Option<u64>,
    /// `running`, `succeeded`, `failed`, `deadline-exceeded`, `lost` or `cancelled`.
    status: String,
    /// When it started and ended, ms since the Unix epoch (0: not yet).
    started_unix_ms: u64,
    ended_unix_ms: u64,
    /// The invocation that ran it (0: none started).
    invocation_id: u64,
    /// The workflow's output (when it succeeded; not in lists).
    #[schema(value_type = Option<Object>)]
    output: serde_json::Value,
    /// What went wrong.
    error: String,
    /// Its report, once it has ended (not in lists).
    #[schema(value_type = Option<Object>)]
    report: serde_json::Value,
    idempotency_key: String,
}

fn execution_json(e: ExecutionRecord) -> Execution {
    Execution {
        execution_id: e.id,
        workflow: e.workflow,
        version: e.version,
        status: e.status.map_or("unknown", ExecutionStatus::as_str).to_owned(),
        started_unix_ms: e.started_unix_ms,
        ended_unix_ms: e.ended_unix_ms,
        invocation_id: e.invocation_id,
        output: json_or_null(&e.output_json),
        error: e.error,
        report: json_or_null(&e.report_json),
        idempotency_key: e.idempotency_key,
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    /// Wait up to this long for it to end, ms (default 0: answer at once; at most 60,000).
    wait_ms: Option<u64>,
}

/// An execution: its status, and once it has ended its output or error and report.
#[utoipa::path(get, path = "/v1/executions/{id}", tag = "executions",
    params(("id" = u64, Path, description = "The execution"), WaitQuery),
    responses((status = 200, body = Execution), (status = 404, body = ApiError)))]
async fn get_execution(
    State(s): State<PlannerService>,
    id: Result<Path<u64>, PathRejection>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Json<Execution>, Failure> {
    let id = path(id)?;
    let wait = std::time::Duration::from_millis(query(q)?.wait_ms.unwrap_or(0));
    Ok(Json(execution_json(s.execution_waiting(id, wait).await?)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct OutputQuery {
    /// For an output that is a list (a foreach's): which element (default 0).
    element: Option<u32>,
}

/// An output of a succeeded execution that its output shows as `{"bytes": N}` (binary, or
/// over 64 KiB), as `application/octet-stream` with its `Content-Length`, streamed from the
/// worker that keeps it. It is kept until it has been read whole once (then it is freed:
/// read it again and the answer is 404), or the execution is forgotten.
#[utoipa::path(get, path = "/v1/executions/{id}/outputs/{name}", tag = "executions",
    params(("id" = u64, Path, description = "The execution"), ("name" = String, Path, description = "The workflow output"), OutputQuery),
    responses((status = 200, description = "The output's bytes", content_type = "application/octet-stream"),
        (status = 404, body = ApiError, description = "No such execution or output, or it was read whole already"),
        (status = 400, body = ApiError, description = "The execution did not succeed, shows the output whole, or ran on MasterSP"),
        (status = 503, body = ApiError, description = "The worker that keeps it cannot be reached")))]
async fn get_output(
    State(s): State<PlannerService>,
    p: Result<Path<(u64, String)>, PathRejection>,
    q: Result<Query<OutputQuery>, QueryRejection>,
) -> Result<Response, Failure> {
    use futures_util::StreamExt as _;
    let (id, name) = path(p)?;
    let element = query(q)?.element.unwrap_or(0);
    // The size comes first: the answer has its length, and an output that cannot be read is
    // an error of its own, not a cut body.
    let (total, stream) = s.read_execution_output(id, &name, element).await?;
    let body = stream.map(|r| r.map(|c| Bytes::from(c.data)).map_err(std::io::Error::other));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, total.to_string()),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}

/// A file uploaded, to give as a workflow input.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
struct Uploaded {
    /// Its id: give it in a run's `files` (`{"files": {"INPUT": "ID"}}`).
    upload_id: String,
    /// Its size, bytes.
    bytes: u64,
}

/// Uploads a file to give as a workflow input (the body, any type, streamed to disk): its
/// id (its content's) goes in a run's `files`. Functions read the input as the file's bytes,
/// by reference. It is kept for the planner's `--keep-uploads-minutes` after it was last
/// uploaded or used. A body larger than the planner's `--max-upload-mib` is refused (413)
/// and nothing of it is kept.
#[utoipa::path(post, path = "/v1/uploads", tag = "executions",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = Uploaded),
        (status = 413, body = ApiError, description = "Larger than the planner takes; nothing was kept"),
        (status = 400, body = ApiError, description = "The body was cut short; nothing was kept")))]
async fn upload(State(s): State<PlannerService>, request: Request) -> Result<(StatusCode, Json<Uploaded>), Failure> {
    use futures_util::StreamExt as _;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = request
        .into_body()
        .into_data_stream()
        .map(|r| r.map_err(|e| e.to_string()));
    match s.uploads()?.receive(declared, body).await {
        Ok((upload_id, bytes)) => Ok((StatusCode::CREATED, Json(Uploaded { upload_id, bytes }))),
        Err(e @ crate::uploads::UploadError::TooLarge { .. }) => {
            Err(Failure(Status::from(e), Some(StatusCode::PAYLOAD_TOO_LARGE)))
        }
        Err(e) => Err(Status::from(e).into()),
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    /// Why (said in the execution's error).
    #[serde(default)]
    reason: String,
}

/// Cancels a running execution: it ends on every worker, its calls are abandoned, its data
/// freed. Answers it once it has ended (`cancelled`, or as it ended when it finished first).
#[utoipa::path(post, path = "/v1/executions/{id}/cancel", tag = "executions",
    params(("id" = u64, Path, description = "The execution")),
    request_body(content = Option<CancelBody>),
    responses((status = 200, body = Execution), (status = 404, body = ApiError),
        (status = 400, body = ApiError, description = "It has already ended")))]
async fn cancel_execution(
    State(s): State<PlannerService>,
    id: Result<Path<u64>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Execution>, Failure> {
    let id = path(id)?;
    let body = bytes_body(body)?;
    let body: CancelBody = if body.is_empty() {
        CancelBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| bad_request(format!("the request body: {e}")))?
    };
    Ok(Json(execution_json(s.cancel_execution(id, &body.reason).await?)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only this workflow's.
    workflow: Option<String>,
    /// Only those in this status.
    status: Option<String>,
    /// Only those started at or after this time, ms since the Unix epoch.
    since_unix_ms: Option<u64>,
    /// At most this many (default 100, at most 1,000).
    limit: Option<u32>,
    /// Only those older than this id (a page's `next_before` gives the next page).
    before: Option<u64>,
}

/// A page of executions, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
struct ExecutionPage {
    executions: Vec<Execution>,
    /// More match: ask again with `before` set to this.
    next_before: Option<u64>,
}

/// Executions, newest first, filtered and paged (without outputs and reports).
#[utoipa::path(get, path = "/v1/executions", tag = "executions",
    params(ListQuery),
    responses((status = 200, body = ExecutionPage), (status = 400, body = ApiError)))]
async fn list_executions(
    State(s): State<PlannerService>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ExecutionPage>, Failure> {
    let q = query(q)?;
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            ExecutionStatus::ALL
                .into_iter()
                .find(|s| s.as_str() == text)
                .ok_or_else(|| {
                    let all: Vec<&str> = ExecutionStatus::ALL.iter().map(|s| s.as_str()).collect();
                    bad_request(format!("`status` `{text}` is unknown; one of: {}", all.join(", ")))
                })?,
        ),
    };
    let (page, more) = s.list_executions(&ExecutionFilter {
        workflow: q.workflow.filter(|w| !w.is_empty()),
        status,
        since_unix_ms: q.since_unix_ms.unwrap_or(0),
        limit: q.limit.unwrap_or(0) as usize,
        before_id: q.before.filter(|b| *b > 0),
    });
    let next_before = more.then(|| page.last().map(|e| e.id)).flatten();
    Ok(Json(ExecutionPage {
        executions: page.into_iter().map(execution_json).collect(),
        next_before,
    }))
}

// ---- cluster --------------------------------------------------------------------------------

/// A registered worker, as its heartbeats say it is.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
struct Worker {
    name: String,
    grpc_addr: String,
    /// Its QUIC address (absent: none).
    quic_addr: Option<String>,
    slots: u32,
    /// No heartbeat for long enough: left out of new plans.
    lost: bool,
    /// Since its last heartbeat, ms.
    silent_ms: u64,
    instances: u32,
    calls: u32,
    arena_bytes_used: u64,
    arena_bytes: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
struct Workers {
    workers: Vec<Worker>,
}

/// Every worker the planner knows, lost ones too, by name.
#[utoipa::path(get, path = "/v1/workers", tag = "cluster",
    responses((status = 200, body = Workers)))]
async fn list_workers(State(s): State<PlannerService>) -> Json<Workers> {
    Json(Workers {
        workers: s
            .workers()
            .into_iter()
            .map(|w| Worker {
                name: w.name,
                grpc_addr: w.grpc_addr.to_string(),
                quic_addr: w.quic_addr.map(|a| a.to_string()),
                slots: w.slots,
                lost: w.lost,
                silent_ms: w.silent_ms,
                instances: w.load.instances,
                calls: w.load.calls,
                arena_bytes_used: w.load.arena_used,
                arena_bytes: w.load.arena_bytes,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_have_their_http_status_and_name() {
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(Code::FailedPrecondition), "FAILED_PRECONDITION");
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(http_status(Code::AlreadyExists), StatusCode::CONFLICT);
        assert_eq!(http_status(Code::ResourceExhausted), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn the_openapi_document_names_every_resource_and_the_token() {
        let doc: serde_json::Value = serde_json::from_str(&openapi_json()).expect("JSON");
        let paths = doc["paths"].as_object().expect("paths");
        let mut found: Vec<String> = paths
            .iter()
            .flat_map(|(p, item)| {
                item.as_object()
                    .into_iter()
                    .flat_map(move |m| m.keys().map(move |k| format!("{} {p}", k.to_uppercase())))
            })
            .collect();
        found.sort();
        assert_eq!(
            found,
            [
                "DELETE /v1/workflows/{name}",
                "GET /v1/executions",
                "GET /v1/executions/{id}",
                "GET /v1/executions/{id}/outputs/{name}",
                "GET /v1/workers",
                "GET /v1/workflows",
                "GET /v1/workflows/{name}",
                "POST /v1/executions/{id}/cancel",
                "POST /v1/uploads",
                "POST /v1/workflows",
                "POST /v1/workflows/{name}/executions",
                "POST /v1/workflows/{name}/invoke",
            ]
        );
        assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
        for schema in ["Execution", "ApiError", "Workflow", "WorkflowDetail", "RunBody"] {
            assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
        }
    }
}
