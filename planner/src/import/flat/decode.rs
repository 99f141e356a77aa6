//! The flat form's YAML read into functions ([`FlatFn`]): every key checked, numbers bounded,
//! unknown keys and `next` types refused. Nothing is resolved here: names are looked up once
//! every function is known.

use crate::compile::check_name;
use crate::error::{ErrorKind, Pos, WdlError};
use crate::yaml::{Fields, Yaml};

pub(super) const TOP_KEYS: &[&str] = &["global_input", "functions", "global_output", "workflow", "name"];
const FUNCTION_KEYS: &[&str] = &[
    "name",
    "source",
    "runtime",
    "scale",
    "mem_usage",
    "split_ratio",
    "input",
    "output",
    "next",
];

#[derive(Debug)]
pub(super) struct FlatFn {
    pub(super) name: String,
    pub(super) pos: Pos,
    pub(super) source: String,
    pub(super) runtime_ms: f64,
    pub(super) scale: u32,
    pub(super) mem_usage: Option<f64>,
    pub(super) split_ratio: Option<u32>,
    pub(super) inputs: Vec<FlatInput>,
    pub(super) outputs: Vec<(String, String, u64)>,
    pub(super) next: Option<FlatNext>,
}

#[derive(Debug)]
pub(super) struct FlatInput {
    pub(super) name: String,
    pub(super) ty: String,
    /// (function, parameter, position of `function`).
    pub(super) value: Option<(String, String, Pos)>,
    pub(super) size: Option<u64>,
}

#[derive(Debug)]
pub(super) struct FlatNext {
    pub(super) pos: Pos,
    pub(super) ty: String,
    pub(super) nodes: Vec<(String, Pos)>,
    pub(super) conditions: Vec<(String, Pos)>,
}

pub(super) fn decode_fn(v: &Yaml) -> Result<FlatFn, WdlError> {
    let mut f = Fields::new(v, "a FaaSFlow function")?;
    let (name, pos) = f.req("name", "the function's name")?.name("a function name")?;
    check_name("the function name", &name, pos)?;
    let source = match f.get("source") {
        Some(s) => s.name("the function's source")?.0,
        None => name.clone(),
    };
    let runtime_ms = match f.get("runtime") {
        Some(r) => {
            bounded(
                r,
                r.f64("a runtime in seconds")?,
                604_800.0,
                "`runtime` (seconds) must be at most 7 days",
            )? * 1000.0
        }
        None => 0.0,
    };
    let scale = match f.get("scale") {
        Some(s) => bounded(
            s,
            s.u64("a number of containers")? as f64,
            10_000.0,
            "`scale` must be from 1 to 10000",
        )
        .and_then(|v| {
            if v >= 1.0 {
                Ok(v as u32)
            } else {
                Err(WdlError::new(ErrorKind::Type, s.pos, "`scale` must be from 1 to 10000"))
            }
        })?,
        None => 1,
    };
    let mem_usage = match f.get("mem_usage") {
        Some(m) => Some(bounded(
            m,
            m.f64("a memory use (a fraction of the container's memory, or MiB)")?,
            1_048_576.0,
            "`mem_usage` must be a fraction of the container's memory (≤ 1) or MiB (at most 1 TiB)",
        )?),
        None => None,
    };
    let split_ratio = match f.get("split_ratio") {
        Some(r) => Some(
            bounded(
                r,
                r.u64("a number of elements")? as f64,
                10_000.0,
                "`split_ratio` must be from 1 to 10000",
            )?
            .max(1.0) as u32,
        ),
        None => None,
    };
    let mut inputs = Vec::new();
    if let Some(i) = f.get("input") {
        for (k, iv) in i.map("a mapping of inputs")? {
            let (iname, _) = k.name("an input name")?;
            let mut fi = Fields::new(iv, "an input")?;
            let ty = fi
                .get("type")
                .map(|t| t.name("an input type"))
                .transpose()?
                .map_or_else(|| "normal".to_owned(), |t| t.0);
            let value = match fi.get("value") {
                Some(val) => {
                    let mut vf = Fields::new(val, "an input value")?;
                    let fun = vf
                        .req("function", "the producing function, or INPUT")?
                        .name("a function name")?;
                    let param = vf.req("parameter", "the output's name")?.name("an output name")?.0;
                    vf.finish(&["function", "parameter"])?;
                    Some((fun.0, param, fun.1))
                }
                None => None,
            };
            let size = fi.get("size").map(|s| s.bytes("a size in bytes")).transpose()?;
            fi.finish(&["type", "value", "size"])?;
            inputs.push(FlatInput {
                name: iname,
                ty,
                value,
                size,
            });
        }
    }
    let mut outputs = Vec::new();
    if let Some(o) = f.get("output") {
        for (k, ov) in o.map("a mapping of outputs")? {
            let (oname, _) = k.name("an output name")?;
            let mut fo = Fields::new(ov, "an output")?;
            let ty = fo
                .get("type")
                .map(|t| t.name("an output type"))
                .transpose()?
                .map_or_else(|| "normal".to_owned(), |t| t.0);
            let _ = fo.get("value");
            let size = fo
                .get("size")
                .map(|s| s.bytes("a size in bytes"))
                .transpose()?
                .unwrap_or(0);
            fo.finish(&["type", "value", "size"])?;
            outputs.push((oname, ty, size));
        }
    }
    let next = match f.get("next") {
        Some(n) => {
            let mut fn_ = Fields::new(n, "`next` (a mapping with `type` and `nodes`)")?;
            let ty = fn_
                .get("type")
                .map(|t| t.name("pass, parallel, switch or foreach"))
                .transpose()?
                .map_or_else(|| "pass".to_owned(), |t| t.0);
            let nodes = match fn_.get("nodes") {
                Some(ns) => ns
                    .seq("a list of function names")?
                    .iter()
                    .map(|x| x.name("a function name"))
                    .collect::<Result<_, _>>()?,
                None => Vec::new(),
            };
            let conditions = match fn_.get("conditions") {
                Some(cs) => cs
                    .seq("a list of conditions")?
                    .iter()
                    .map(|x| x.name("a condition"))
                    .collect::<Result<_, _>>()?,
                None => Vec::new(),
            };
            fn_.finish(&["type", "nodes", "conditions"])?;
            if !matches!(ty.as_str(), "pass" | "parallel" | "switch" | "foreach") {
                return Err(
                    WdlError::new(ErrorKind::Type, n.pos, format!("unknown `next` type `{ty}`"))
                        .expected("pass, parallel, switch or foreach"),
                );
            }
            Some(FlatNext {
                pos: n.pos,
                ty,
                nodes,
                conditions,
            })
        }
        None => None,
    };
    f.finish(FUNCTION_KEYS)?;
    Ok(FlatFn {
        name,
        pos,
        source,
        runtime_ms,
        scale,
        mem_usage,
        split_ratio,
        inputs,
        outputs,
        next,
    })
}

/// `v` if it is at most `max`, else a type error at `node` saying `msg`.
fn bounded(node: &Yaml, v: f64, max: f64, msg: &str) -> Result<f64, WdlError> {
    if v <= max {
        Ok(v)
    } else {
        Err(WdlError::new(ErrorKind::Type, node.pos, msg.to_owned()))
    }
}
