//! `Daemon.Execute` (MasterSP: the planner's central engine has a daemon run one function
//! attempt) to and from the wire.
//!
//! The daemon crate has its own types for the same request (`faasflow_daemon::api::Execute`);
//! these mirror them so that both ends convert through this one module, with the same checks.
//! What comes from the wire is untrusted: names must be non-empty and unique, JSON must parse
//! (at most [`MAX_JSON`] bytes), sizes must fit the remote tier, and **every object must belong
//! to the request's invocation** (same workflow, version and invocation id), so an Execute can
//! never make a daemon read or report another invocation's data.

use std::collections::HashSet;
use std::sync::Arc;

use faasflow_proto::v1 as pb;

use super::ConvertError;
use faasflow_core::dag::{FailureKind, NodeId};
use faasflow_core::report::{EdgeRecord, FunctionRecord};
use faasflow_remote::{MAX_OBJECT_LEN, ObjectKey};

/// Largest JSON value (an inline input, an object's parsed value, a record) accepted.
pub const MAX_JSON: usize = 64 << 20;

/// An object in the remote tier.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecObject {
    /// Where it is.
    pub key: ObjectKey,
    /// Its size in bytes.
    pub len: u64,
    /// Its parsed value when it is a `json` or `list` output.
    pub json: Option<Arc<serde_json::Value>>,
}

/// One input of an executed function.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecValue {
    /// Every source was skipped.
    Absent,
    /// A JSON value: a workflow input, a foreach element or its index.
    Json(Arc<serde_json::Value>),
    /// An object in the remote tier.
    Object(ExecObject),
    /// The outputs of a foreach body read after it, in element order.
    List(Vec<ExecObject>),
}

/// One function attempt to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecRequest {
    /// The workflow.
    pub workflow: String,
    /// The plan version.
    pub version: u64,
    /// The invocation.
    pub invocation: u64,
    /// The task.
    pub node: NodeId,
    /// The foreach element.
    pub element: Option<u32>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The function's inputs, by name.
    pub inputs: Vec<(String, ExecValue)>,
}

/// What an executed function produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecDone {
    /// Its outputs, stored in the remote tier under keys of its invocation.
    pub outputs: Vec<(String, ExecObject)>,
    /// The run.
    pub record: FunctionRecord,
    /// The objects it read.
    pub edges: Vec<EdgeRecord>,
    /// Time spent fetching inputs and storing outputs, µs.
    pub data_us: f64,
}

// ---- to the wire --------------------------------------------------------------------------

fn json_bytes(v: &serde_json::Value) -> Vec<u8> {
    // A `Value` always serializes (its map keys are strings).
    serde_json::to_vec(v).unwrap_or_default()
}

fn object_to_proto(o: &ExecObject) -> pb::RemoteObject {
    pb::RemoteObject {
        workflow: o.key.workflow.clone(),
        version: o.key.version,
        invocation_id: o.key.invocation,
        object: o.key.object.clone(),
        len: o.len,
        json: o.json.as_deref().map(json_bytes),
    }
}

/// Encodes a request.
pub fn execute_request_to_proto(r: &ExecRequest) -> pb::ExecuteRequest {
    use pb::execute_input::Value;
    pb::ExecuteRequest {
        workflow: r.workflow.clone(),
        version: r.version,
        invocation_id: r.invocation,
        node: r.node.index() as u32,
        element: r.element,
        attempt: r.attempt,
        inputs: r
            .inputs
            .iter()
            .map(|(name, v)| pb::ExecuteInput {
                name: name.clone(),
                value: Some(match v {
                    ExecValue::Absent => Value::Absent(pb::Absent {}),
                    ExecValue::Json(j) => Value::Json(json_bytes(j)),
                    ExecValue::Object(o) => Value::Object(object_to_proto(o)),
                    ExecValue::List(l) => Value::List(pb::RemoteObjects {
                        objects: l.iter().map(object_to_proto).collect(),
                    }),
                }),
            })
            .collect(),
    }
}

/// Encodes an answer: the outputs, or why the attempt failed.
pub fn execute_response_to_proto(r: &Result<ExecDone, (String, FailureKind)>) -> pb::ExecuteResponse {
    use pb::execute_response::Result as R;
    pb::ExecuteResponse {
        failure: match r {
            Ok(_) => pb::FailureKind::Unspecified as i32,
            Err((_, kind)) => super::enums::failure_kind_to_proto(*kind),
        },
        result: Some(match r {
            Ok(done) => R::Done(pb::Executed {
                outputs: done
                    .outputs
                    .iter()
                    .map(|(name, o)| pb::NamedObject {
                        name: name.clone(),
                        object: Some(object_to_proto(o)),
                    })
                    .collect(),
                // Records hold strings and finite numbers: they always serialize.
                record_json: serde_json::to_vec(&done.record).unwrap_or_default(),
                edges_json: serde_json::to_vec(&done.edges).unwrap_or_default(),
                data_us: done.data_us,
            }),
            Err((e, _)) => R::Error(e.clone()),
        }),
    }
}

// ---- from the wire ------------------------------------------------------------------------

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConvertError {
    ConvertError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

fn parse_json(bytes: &[u8], field: &str) -> Result<Arc<serde_json::Value>, ConvertError> {
    if bytes.len() > MAX_JSON {
        return Err(invalid(
            field,
            format!("is {} bytes of JSON; at most {MAX_JSON} are accepted", bytes.len()),
        ));
    }
    serde_json::from_slice(bytes)
        .map(Arc::new)
        .map_err(|e| invalid(field, format!("is not valid JSON: {e}")))
}

fn non_empty<'a>(name: &'a str, field: &str) -> Result<&'a str, ConvertError> {
    if name.is_empty() {
        Err(invalid(field, "is empty"))
    } else {
        Ok(name)
    }
}

/// The invocation an Execute is about: every object must be one of its.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    /// The workflow.
    pub workflow: &'a str,
    /// The plan version.
    pub version: u64,
    /// The invocation.
    pub invocation: u64,
}

fn object_from_proto(o: &pb::RemoteObject, owner: Owner<'_>, field: &str) -> Result<ExecObject, ConvertError> {
    if o.workflow != owner.workflow || o.version != owner.version || o.invocation_id != owner.invocation {
        return Err(invalid(
            field,
            format!(
                "is an object of workflow `{}` version {} invocation {}, not of the request's (workflow `{}` version {} invocation {})",
                o.workflow, o.version, o.invocation_id, owner.workflow, owner.version, owner.invocation
            ),
        ));
    }
    non_empty(&o.object, &format!("{field}.object"))?;
    if o.len > MAX_OBJECT_LEN as u64 {
        return Err(invalid(
            format!("{field}.len"),
            format!(
                "is {}; the remote tier stores at most {MAX_OBJECT_LEN} bytes per object",
                o.len
            ),
        ));
    }
    let json = o
        .json
        .as_deref()
        .map(|j| parse_json(j, &format!("{field}.json")))
        .transpose()?;
    Ok(ExecObject {
        key: ObjectKey::new(o.workflow.clone(), o.version, o.invocation_id, o.object.clone()),
        len: o.len,
        json,
    })
}

/// Decodes and checks a request.
pub fn execute_request_from_proto(r: &pb::ExecuteRequest) -> Result<ExecRequest, ConvertError> {
    use pb::execute_input::Value;
    non_empty(&r.workflow, "workflow")?;
    if r.attempt == 0 {
        return Err(invalid("attempt", "is 0; attempts count from 1"));
    }
    if r.node == u32::MAX {
        return Err(invalid("node", format!("is {}, not a node index", r.node)));
    }
    let owner = Owner {
        workflow: &r.workflow,
        version: r.version,
        invocation: r.invocation_id,
    };
    let mut seen = HashSet::new();
    let mut inputs = Vec::with_capacity(r.inputs.len());
    for (i, input) in r.inputs.iter().enumerate() {
        let field = format!("inputs[{i}]");
        let name = non_empty(&input.name, &format!("{field}.name"))?;
        if !seen.insert(name) {
            return Err(invalid(
                format!("{field}.name"),
                format!("repeats the input `{name}`; each input is given once"),
            ));
        }
        let value = match &input.value {
            None => {
                return Err(ConvertError::Missing {
                    field: format!("{field}.value"),
                });
            }
            Some(Value::Absent(_)) => ExecValue::Absent,
            Some(Value::Json(j)) => ExecValue::Json(parse_json(j, &format!("{field}.json"))?),
            Some(Value::Object(o)) => ExecValue::Object(object_from_proto(o, owner, &format!("{field}.object"))?),
            Some(Value::List(l)) => ExecValue::List(
                l.objects
                    .iter()
                    .enumerate()
                    .map(|(k, o)| object_from_proto(o, owner, &format!("{field}.list.objects[{k}]")))
                    .collect::<Result<_, _>>()?,
            ),
        };
        inputs.push((name.to_owned(), value));
    }
    Ok(ExecRequest {
        workflow: r.workflow.clone(),
        version: r.version,
        invocation: r.invocation_id,
        node: NodeId::new(r.node as usize),
        element: r.element,
        attempt: r.attempt,
        inputs,
    })
}

/// Decodes and checks an answer to a request of `owner`'s invocation: `Ok(Err(_))` is the
/// daemon saying the attempt failed, `Err(_)` an answer that breaks the protocol.
pub fn execute_response_from_proto(
    r: &pb::ExecuteResponse,
    owner: Owner<'_>,
) -> Result<Result<ExecDone, (String, FailureKind)>, ConvertError> {
    use pb::execute_response::Result as R;
    let done = match &r.result {
        None => {
            return Err(ConvertError::Missing { field: "result".into() });
        }
        Some(R::Error(e)) => {
            // An answer without a kind (or one this side does not know) is a crash: the
            // attempt did not run to its end.
            let kind = super::enums::failure_kind_from_proto(r.failure).unwrap_or(FailureKind::Crash);
            return Ok(Err((e.clone(), kind)));
        }
        Some(R::Done(done)) => done,
    };
    let mut seen = HashSet::new();
    let mut outputs = Vec::with_capacity(done.outputs.len());
    for (i, o) in done.outputs.iter().enumerate() {
        let field = format!("done.outputs[{i}]");
        let name = non_empty(&o.name, &format!("{field}.name"))?;
        if !seen.insert(name) {
            return Err(invalid(
                format!("{field}.name"),
                format!("repeats the output `{name}`; each output is given once"),
            ));
        }
        let object = o.object.as_ref().ok_or_else(|| ConvertError::Missing {
            field: format!("{field}.object"),
        })?;
        outputs.push((
            name.to_owned(),
            object_from_proto(object, owner, &format!("{field}.object"))?,
        ));
    }
    let check_len = |bytes: &[u8], field: &str| {
        if bytes.len() > MAX_JSON {
            Err(invalid(
                field,
                format!("is {} bytes; at most {MAX_JSON} are accepted", bytes.len()),
            ))
        } else {
            Ok(())
        }
    };
    check_len(&done.record_json, "done.record_json")?;
    check_len(&done.edges_json, "done.edges_json")?;
    let record: FunctionRecord = serde_json::from_slice(&done.record_json)
        .map_err(|e| invalid("done.record_json", format!("is not a function record: {e}")))?;
    let edges: Vec<EdgeRecord> = serde_json::from_slice(&done.edges_json)
        .map_err(|e| invalid("done.edges_json", format!("is not a list of edge records: {e}")))?;
    if !done.data_us.is_finite() || done.data_us < 0.0 {
        return Err(ConvertError::InvalidNumber {
            field: "done.data_us".into(),
            value: done.data_us,
            range: "a finite number ≥ 0",
        });
    }
    Ok(Ok(ExecDone {
        outputs,
        record,
        edges,
        data_us: done.data_us,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(inv: u64, name: &str, json: Option<serde_json::Value>) -> ExecObject {
        ExecObject {
            key: ObjectKey::new("wf", 2, inv, name),
            len: 7,
            json: json.map(Arc::new),
        }
    }

    fn request() -> ExecRequest {
        ExecRequest {
            workflow: "wf".into(),
            version: 2,
            invocation: 9,
            node: NodeId::new(3),
            element: Some(1),
            attempt: 2,
            inputs: vec![
                ("a".into(), ExecValue::Absent),
                ("b".into(), ExecValue::Json(Arc::new(serde_json::json!({"x": [1, 2]})))),
                (
                    "c".into(),
                    ExecValue::Object(obj(9, "t.out", Some(serde_json::json!(5)))),
                ),
                (
                    "d".into(),
                    ExecValue::List(vec![obj(9, "u.out#0", None), obj(9, "u.out#1", None)]),
                ),
            ],
        }
    }

    fn owner(r: &ExecRequest) -> Owner<'_> {
        Owner {
            workflow: &r.workflow,
            version: r.version,
            invocation: r.invocation,
        }
    }

    #[test]
    fn requests_and_answers_round_trip() {
        let r = request();
        assert_eq!(execute_request_from_proto(&execute_request_to_proto(&r)).unwrap(), r);
        let done = ExecDone {
            outputs: vec![("out".into(), obj(9, "t.out", None))],
            record: FunctionRecord {
                name: "t".into(),
                worker: "w1".into(),
                element: None,
                instance: Some(4),
                start_us: 1.0,
                end_us: 2.0,
                exec_us: 0.5,
                data_us: 0.25,
                peak_memory_bytes: None,
                output_bytes: Default::default(),
                attempt: 1,
                skipped: false,
                error: None,
                failure: None,
                chained: false,
            },
            edges: vec![EdgeRecord {
                from: "s".into(),
                to: "t".into(),
                bytes: 7,
                tier: "remote".into(),
                transfer_us: 3.0,
                from_element: None,
                to_element: None,
            }],
            data_us: 4.5,
        };
        let ok = Ok(done);
        assert_eq!(
            execute_response_from_proto(&execute_response_to_proto(&ok), owner(&r)).unwrap(),
            ok
        );
        for kind in FailureKind::ALL {
            let failed = Err(("step `t` failed: boom".to_owned(), kind));
            assert_eq!(
                execute_response_from_proto(&execute_response_to_proto(&failed), owner(&r)).unwrap(),
                failed
            );
        }
        // An answer without a kind is taken as a crash.
        let mut p = execute_response_to_proto(&Err(("boom".to_owned(), FailureKind::Error)));
        p.failure = 0;
        assert_eq!(
            execute_response_from_proto(&p, owner(&r)).unwrap(),
            Err(("boom".to_owned(), FailureKind::Crash))
        );
    }

    #[test]
    fn bad_requests_are_refused_with_the_field() {
        let check = |f: &dyn Fn(&mut pb::ExecuteRequest), expect: &str| {
            let mut p = execute_request_to_proto(&request());
            f(&mut p);
            assert_eq!(execute_request_from_proto(&p).unwrap_err().to_string(), expect);
        };
        check(&|p| p.workflow.clear(), "`workflow` is empty");
        check(&|p| p.attempt = 0, "`attempt` is 0; attempts count from 1");
        check(
            &|p| p.inputs[1].name = "a".into(),
            "`inputs[1].name` repeats the input `a`; each input is given once",
        );
        check(&|p| p.inputs[0].value = None, "`inputs[0].value` is missing");
        check(
            &|p| p.inputs[1].value = Some(pb::execute_input::Value::Json(b"{".to_vec())),
            "`inputs[1].json` is not valid JSON: EOF while parsing an object at line 1 column 1",
        );
        check(
            &|p| {
                if let Some(pb::execute_input::Value::Object(o)) = &mut p.inputs[2].value {
                    o.invocation_id = 8;
                }
            },
            "`inputs[2].object` is an object of workflow `wf` version 2 invocation 8, not of the request's (workflow `wf` version 2 invocation 9)",
        );
        check(
            &|p| {
                if let Some(pb::execute_input::Value::List(l)) = &mut p.inputs[3].value {
                    l.objects[1].len = u64::MAX;
                }
            },
            "`inputs[3].list.objects[1].len` is 18446744073709551615; the remote tier stores at most 536870912 bytes per object",
        );
    }

    #[test]
    fn bad_answers_are_refused_with_the_field() {
        let r = request();
        let mut p = execute_response_to_proto(&Ok(ExecDone {
            outputs: vec![("out".into(), obj(10, "t.out", None))],
            record: FunctionRecord {
                name: "t".into(),
                worker: "w1".into(),
                element: None,
                instance: None,
                start_us: 0.0,
                end_us: 0.0,
                exec_us: 0.0,
                data_us: 0.0,
                peak_memory_bytes: None,
                output_bytes: Default::default(),
                attempt: 1,
                skipped: false,
                error: None,
                failure: None,
                chained: false,
            },
            edges: Vec::new(),
            data_us: 0.0,
        }));
        assert_eq!(
            execute_response_from_proto(&p, owner(&r)).unwrap_err().to_string(),
            "`done.outputs[0].object` is an object of workflow `wf` version 2 invocation 10, not of the request's (workflow `wf` version 2 invocation 9)"
        );
        if let Some(pb::execute_response::Result::Done(d)) = &mut p.result {
            d.outputs.clear();
            d.record_json = b"[]".to_vec();
        }
        assert!(
            execute_response_from_proto(&p, owner(&r))
                .unwrap_err()
                .to_string()
                .starts_with("`done.record_json` is not a function record")
        );
        assert_eq!(
            execute_response_from_proto(
                &pb::ExecuteResponse {
                    result: None,
                    failure: 0
                },
                owner(&r)
            )
            .unwrap_err()
            .to_string(),
            "`result` is missing"
        );
    }
}
