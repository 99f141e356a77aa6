//! The planner's HTTP/JSON API on a real local cluster, over real sockets: every call a user
//! makes with `curl` in docs/api.md, its errors, its token, and its answers checked against
//! the OpenAPI document the planner serves.

use std::sync::Arc;

use serde_json::{Value, json};

mod support;

use faasflow_rpc::tls::ALPN_HTTP1;
use support::local::{Cluster, https, pair_workflow};

/// An HTTP answer: status, headers (lower-case names), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The error's message.
    fn message(&self) -> String {
        self.json()["error"]["message"].as_str().unwrap_or_default().to_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// The planner's HTTP API: its address and TLS settings (the cluster's CA, no client
/// certificate: as `curl --cacert ca.pem`).
struct Api {
    addr: String,
    tls: Arc<rustls::ClientConfig>,
}

/// One HTTPS/1.1 request on its own connection.
fn http(api: &Api, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let addr = &api.addr;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    let raw = https(&api.tls, addr, "planner", &request).expect("an answer");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP answer");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(n, v)| n == "transfer-encoding" && v == "chunked") {
        body = unchunk(&body);
    }
    Answer { status, headers, body }
}

fn unchunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = b.windows(2).position(|w| w == b"\r\n").expect("a chunk size");
        let n = usize::from_str_radix(std::str::from_utf8(&b[..end]).expect("hex").trim(), 16).expect("hex");
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[end + 2..end + 2 + n]);
        b = &b[end + 4 + n..];
    }
}

/// Checks `value` against `schema` of the OpenAPI document `doc` (the parts of JSON Schema
/// the document uses: `$ref`, `type` (one or several), `properties`, `required`, `items`,
/// `additionalProperties`, `oneOf`); returns what does not match.
fn mismatches(doc: &Value, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().expect("a name");
        return mismatches(doc, &doc["components"]["schemas"][name], value, at, out);
    }
    if let Some(options) = schema["oneOf"].as_array() {
        let fits = options.iter().any(|o| {
            let mut m = Vec::new();
            mismatches(doc, o, value, at, &mut m);
            m.is_empty()
        });
        if !fits {
            out.push(format!("{at}: fits none of oneOf"));
        }
        return;
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return,
    };
    let actual = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let fits = types
        .iter()
        .any(|t| *t == actual || (*t == "number" && actual == "integer"));
    if !fits {
        out.push(format!("{at}: a {actual}, the document says {types:?}"));
        return;
    }
    match value {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            for (k, v) in map {
                match props.and_then(|p| p.get(k)) {
                    Some(s) => mismatches(doc, s, v, &format!("{at}.{k}"), out),
                    None if schema["additionalProperties"].is_object() => {
                        mismatches(doc, &schema["additionalProperties"], v, &format!("{at}.{k}"), out)
                    }
                    None if props.is_some() => out.push(format!("{at}.{k}: not in the document")),
                    None => {}
                }
            }
            for r in schema["required"].as_array().into_iter().flatten() {
                let r = r.as_str().expect("a name");
                if !map.contains_key(r) {
                    out.push(format!("{at}.{r}: required, absent"));
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                mismatches(doc, &schema["items"], v, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Checks an answer against what the document says `method path` answers with its status.
fn conforms(doc: &Value, method: &str, path: &str, a: &Answer) {
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "{method} {path} is not in the document");
    let schema = &op["responses"][a.status.to_string()]["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} answered {}, which the document does not list: {}",
        a.status,
        String::from_utf8_lossy(&a.body)
    );
    let mut out = Vec::new();
    mismatches(doc, schema, &a.json(), "$", &mut out);
    assert!(out.is_empty(), "{method} {path} ({}): {out:#?}", a.status);
}

#[test]
fn the_http_api_deploys_runs_and_answers_as_its_openapi_document_says() {
    let c = Cluster::up("http-api", 2, &["--heartbeat-ms", "200"]);
    let addr = Api {
        addr: c.planner(),
        tls: c.tls(None, ALPN_HTTP1),
    };
    let token = std::fs::read_to_string(c.dir.join("certs").join("token")).expect("token");
    let bearer = format!("Bearer {}", token.trim());
    let auth = [("Authorization", bearer.as_str())];
    let json_auth = [("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
    // The document, without the token.
    let a = http(&addr, "GET", "/v1/openapi.json", &[], b"");
    assert_eq!(a.status, 200);
    let doc = a.json();
    assert_eq!(doc["openapi"], "3.1.0");
    // Without the token, or with another: 401, as JSON.
    for headers in [&[][..], &[("Authorization", "Bearer not-the-token")][..]] {
        let a = http(&addr, "GET", "/v1/workflows", headers, b"");
        assert_eq!(a.status, 401);
        assert_eq!(a.json()["error"]["code"], "UNAUTHENTICATED");
        conforms(&doc, "get", "/v1/workflows", &a);
    }
    // Deploy the YAML itself.
    let yaml = pair_workflow("pair", "1ms", false);
    let yaml_auth = [("Authorization", bearer.as_str()), ("Content-Type", "application/yaml")];
    let a = http(
        &addr,
        "POST",
        "/v1/workflows?file_name=pair.yaml",
        &yaml_auth,
        yaml.as_bytes(),
    );
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.header("location"), Some("/v1/workflows/pair"));
    assert_eq!(a.json(), json!({"workflow": "pair", "version": 1}));
    conforms(&doc, "post", "/v1/workflows", &a);
    // As JSON too; a broken source names where it is broken.
    let body = json!({"source": yaml, "file_name": "pair.yaml"}).to_string();
    let a = http(&addr, "POST", "/v1/workflows", &json_auth, body.as_bytes());
    assert_eq!((a.status, a.json()["version"].as_u64()), (201, Some(2)));
    let a = http(
        &addr,
        "POST",
        "/v1/workflows?file_name=bad.yaml",
        &yaml_auth,
        b"name: bad\nsteps: [\n",
    );
    assert_eq!(a.status, 400);
    let e = a.json();
    assert_eq!(e["error"]["code"], "INVALID_ARGUMENT");
    assert!(a.message().contains("bad.yaml:"), "{e}");
    conforms(&doc, "post", "/v1/workflows", &a);
    let a = http(
        &addr,
        "POST",
        "/v1/workflows",
        &[("Authorization", bearer.as_str()), ("Content-Type", "image/png")],
        b"x",
    );
    assert_eq!(a.status, 415);
    // A body over the limit: 413, and nothing was deployed.
    let big = vec![b'#'; (4 << 20) + 1];
    let a = http(&addr, "POST", "/v1/workflows", &yaml_auth, &big);
    assert_eq!(a.status, 413, "{}", String::from_utf8_lossy(&a.body));
    assert!(a.message().contains("nothing was kept"));
    // List and describe.
    let a = http(&addr, "GET", "/v1/workflows", &auth, b"");
    assert_eq!(a.status, 200);
    conforms(&doc, "get", "/v1/workflows", &a);
    assert_eq!(a.json()["workflows"][0]["versions"][0]["version"], 2);
    let a = http(&addr, "GET", "/v1/workflows/pair", &auth, b"");
    assert_eq!(a.status, 200);
    conforms(&doc, "get", "/v1/workflows/{name}", &a);
    assert_eq!(a.json()["versions"][0]["source"], yaml.as_str());
    let a = http(&addr, "GET", "/v1/workflows/nothing", &auth, b"");
    assert_eq!(a.status, 404);
    conforms(&doc, "get", "/v1/workflows/{name}", &a);
    // Invoke, waiting.
    let a = http(
        &addr,
        "POST",
        "/v1/workflows/pair/invoke",
        &json_auth,
        br#"{"input": {}}"#,
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    conforms(&doc, "post", "/v1/workflows/{name}/invoke", &a);
    assert_eq!(a.json()["status"], "succeeded");
    // The report has the planner's time too, which holds the entry daemon's.
    let report = &a.json()["report"];
    let (planner_us, e2e_us) = (report["planner_us"].as_f64(), report["e2e_us"].as_f64());
    assert!(
        planner_us.zip(e2e_us).is_some_and(|(p, e)| 0.0 < e && e <= p),
        "{report}"
    );
    let a = http(&addr, "POST", "/v1/workflows/pair/invoke", &json_auth, b"{not json");
    assert_eq!(a.status, 400);
    conforms(&doc, "post", "/v1/workflows/{name}/invoke", &a);
    let a = http(&addr, "POST", "/v1/workflows/pair/invoke", &auth, br#"{"input": {}}"#);
    assert_eq!(a.status, 415, "JSON without its content type");
    assert_eq!(a.json()["error"]["code"], "INVALID_ARGUMENT");
    conforms(&doc, "post", "/v1/workflows/{name}/invoke", &a);
    // Start an execution; the same key again answers it; another request under it is refused.
    let keyed = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
        ("Idempotency-Key", "order-17"),
    ];
    let a = http(
        &addr,
        "POST",
        "/v1/workflows/pair/executions",
        &keyed,
        br#"{"input": {}}"#,
    );
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    conforms(&doc, "post", "/v1/workflows/{name}/executions", &a);
    let id = a.json()["execution_id"].as_u64().expect("an id");
    assert_eq!(a.header("location"), Some(format!("/v1/executions/{id}").as_str()));
    let a = http(
        &addr,
        "POST",
        "/v1/workflows/pair/executions",
        &keyed,
        br#"{"input": {}}"#,
    );
    assert_eq!(
        (a.status, a.json()),
        (200, json!({"execution_id": id, "existing": true}))
    );
    let a = http(
        &addr,
        "POST",
        "/v1/workflows/pair/executions",
        &keyed,
        br#"{"input": {}, "deadline_ms": 5000}"#,
    );
    assert_eq!(a.status, 409);
    conforms(&doc, "post", "/v1/workflows/{name}/executions", &a);
    // One call waits for its end.
    let a = http(&addr, "GET", &format!("/v1/executions/{id}?wait_ms=30000"), &auth, b"");
    assert_eq!(a.status, 200);
    conforms(&doc, "get", "/v1/executions/{id}", &a);
    let done = a.json();
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(done["report"]["functions"].is_array(), "{done}");
    let a = http(
        &addr,
        "GET",
        "/v1/executions?workflow=pair&status=succeeded&limit=1",
        &auth,
        b"",
    );
    assert_eq!(a.status, 200);
    conforms(&doc, "get", "/v1/executions", &a);
    assert_eq!(a.json()["executions"][0]["execution_id"], id);
    let a = http(&addr, "GET", "/v1/executions?status=bogus", &auth, b"");
    assert_eq!(a.status, 400);
    let a = http(&addr, "GET", "/v1/executions/999999", &auth, b"");
    assert_eq!(a.status, 404);
    conforms(&doc, "get", "/v1/executions/{id}", &a);
    // Cancel: of one that ended, of one that does not exist.
    let a = http(&addr, "POST", &format!("/v1/executions/{id}/cancel"), &auth, b"");
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["error"]["code"], "FAILED_PRECONDITION");
    conforms(&doc, "post", "/v1/executions/{id}/cancel", &a);
    let a = http(&addr, "POST", "/v1/executions/999999/cancel", &auth, b"");
    assert_eq!(a.status, 404);
    // Workers, metrics, an unknown path.
    let a = http(&addr, "GET", "/v1/workers", &auth, b"");
    assert_eq!(a.status, 200);
    conforms(&doc, "get", "/v1/workers", &a);
    assert_eq!(a.json()["workers"].as_array().map(Vec::len), Some(2));
    let a = http(&addr, "GET", "/metrics", &[], b"");
    assert_eq!(a.status, 200);
    let text = String::from_utf8_lossy(&a.body).into_owned();
    assert!(
        text.contains("faasflow_planner_invocations_total{outcome=\"ok\"} 1"),
        "{text}"
    );
    let a = http(&addr, "GET", "/nothing", &auth, b"");
    assert_eq!(a.status, 404);
    assert!(a.message().contains("/v1/openapi.json"));
    // Undeploy; then it is gone.
    let a = http(&addr, "DELETE", "/v1/workflows/pair?drain_ms=5000", &auth, b"");
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    conforms(&doc, "delete", "/v1/workflows/{name}", &a);
    assert_eq!(
        a.json()["versions"],
        json!([2]),
        "version 1 left once version 2 took over"
    );
    let a = http(&addr, "DELETE", "/v1/workflows/pair", &auth, b"");
    assert_eq!(a.status, 404);
    // gRPC on the same port still serves.
    let out = c.run(&["workflows"]);
    assert!(out.status.success());
}
