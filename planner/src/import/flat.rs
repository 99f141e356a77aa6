//! Import of FaaSFlow v1.1's flat form (`flat_workflow.yaml`).
//!
//! The flat form is already a graph: each function lists its successors under `next`
//! (`pass`, `parallel`, `switch` with conditions, `foreach`), and `source: VIRTUAL` marks
//! control nodes. Inputs name their producer (`function: <name>`) or say `function: INPUT`,
//! in which case the producer is found by the output name in `parameter` (the nearest
//! ancestor that produces it), or else it is a workflow input.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use petgraph::Direction;
use petgraph::visit::EdgeRef;

use crate::compile::{add_data, check_acyclic, check_cel_syntax, check_name, connect_control, is_identifier};
use crate::error::{ErrorKind, Pos, WdlError, did_you_mean, list_names};
use crate::import::check_default_name;
use crate::import::cond::{self, Token};
use crate::import::{FAASFLOW_MEMORY_MIB, Imported};
use crate::wdl::{Condition, default_spec};
use crate::yaml::{Fields, Yaml};
use faasflow_core::dag::{
    Case, DataSource, Foreach, FunctionSpec, InputBinding, JoinKind, Node, NodeId, NodeKind, OutputDecl, SourceFormat,
    Switch, Task, ValueKind, Workflow, WorkflowInput, WorkflowOutput,
};

const TOP_KEYS: &[&str] = &["global_input", "functions", "global_output", "workflow", "name"];
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
struct FlatFn {
    name: String,
    pos: Pos,
    source: String,
    runtime_ms: f64,
    scale: u32,
    mem_usage: Option<f64>,
    split_ratio: Option<u32>,
    inputs: Vec<FlatInput>,
    outputs: Vec<(String, String, u64)>,
    next: Option<FlatNext>,
}

#[derive(Debug)]
struct FlatInput {
    name: String,
    ty: String,
    /// (function, parameter, position of `function`).
    value: Option<(String, String, Pos)>,
    size: Option<u64>,
}

#[derive(Debug)]
struct FlatNext {
    pos: Pos,
    ty: String,
    nodes: Vec<(String, Pos)>,
    conditions: Vec<(String, Pos)>,
}

/// Imports a flat FaaSFlow workflow; `name` is the workflow's name (the file's directory).
pub fn import(root: &Yaml, name: &str) -> Result<Imported, WdlError> {
    let mut top = Fields::new(root, "the FaaSFlow workflow")?;
    let functions_node = match (top.get("functions"), top.get("fuctions")) {
        (Some(f), _) | (None, Some(f)) => f,
        (None, None) => {
            return Err(WdlError::new(
                ErrorKind::MissingKey,
                root.pos,
                "the FaaSFlow workflow has no `functions`",
            )
            .expected("`functions:` with a list of functions"));
        }
    };
    let (workflow_key, name_key) = (top.get("workflow"), top.get("name"));
    let name = match workflow_key.or(name_key) {
        Some(n) => {
            let (name, pos) = n.name("the workflow's name")?;
            check_name("the workflow's name", &name, pos)?;
            name
        }
        None => {
            check_default_name(name)?;
            name.to_owned()
        }
    };
    let global_input = top.get("global_input");
    let global_output = top.get("global_output");
    top.finish(&[TOP_KEYS, &["fuctions"]].concat())?;

    let fns = functions_node
        .seq("a list of functions")?
        .iter()
        .map(decode_fn)
        .collect::<Result<Vec<_>, _>>()?;
    let mut imp = Importer {
        wf: Workflow::new(name, SourceFormat::FaasflowFlat),
        ids: HashMap::new(),
        warnings: Vec::new(),
        json_outputs: BTreeSet::new(),
    };
    if let Some(gi) = global_input {
        for (k, v) in gi.map("`global_input`: a mapping of inputs")? {
            let (key, _) = k.name("an input name")?;
            let mut f = Fields::new(v, "a global input")?;
            let _ = f.get("type");
            let param = match f.get("value") {
                Some(val) => {
                    let mut vf = Fields::new(val, "an input value")?;
                    let _ = vf.get("function");
                    let p = vf
                        .get("parameter")
                        .map(|p| p.name("a parameter name"))
                        .transpose()?
                        .map(|p| p.0);
                    vf.finish(&["function", "parameter"])?;
                    p
                }
                None => None,
            };
            let size = f
                .get("size")
                .map(|s| s.bytes("a size in bytes"))
                .transpose()?
                .unwrap_or(0);
            f.finish(&["type", "value", "size"])?;
            imp.wf.inputs.push(WorkflowInput {
                name: param.unwrap_or(key),
                kind: ValueKind::Json,
                size,
            });
        }
    }
    imp.nodes(&fns)?;
    imp.control_edges(&fns)?;
    imp.data_edges(&fns)?;
    imp.key_reads(&fns);
    imp.conditions()?;
    if let Some(go) = global_output {
        imp.outputs(go)?;
    }
    imp.mark_json_outputs();
    check_acyclic(&imp.wf)?;
    Ok(Imported {
        workflow: imp.wf,
        warnings: imp.warnings,
    })
}

fn decode_fn(v: &Yaml) -> Result<FlatFn, WdlError> {
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

struct Importer {
    wf: Workflow,
    /// Node ids by name (never iterated).
    ids: HashMap<String, NodeId>,
    warnings: Vec<WdlError>,
    /// Outputs that conditions read: (node, output), made json.
    json_outputs: BTreeSet<(NodeId, String)>,
}

fn is_virtual(f: &FlatFn) -> bool {
    f.source == "VIRTUAL"
}

fn is_end(f: &FlatFn) -> bool {
    f.source == "END" || (f.name == "END" && f.inputs.is_empty())
}

impl Importer {
    fn add(&mut self, name: &str, pos: Pos, kind: NodeKind) -> Result<NodeId, WdlError> {
        if let Some(&first) = self.ids.get(name) {
            let fp = self.wf.graph[first].pos;
            return Err(WdlError::new(
                ErrorKind::DuplicateName,
                pos,
                format!("two functions are named `{name}`"),
            )
            .hint(format!("the first is at line {}; rename one of them", fp.line)));
        }
        let id = self.wf.graph.add_node(Node {
            name: name.to_owned(),
            pos,
            kind,
            scope: None,
        });
        self.ids.insert(name.to_owned(), id);
        Ok(id)
    }

    fn lookup(&self, name: &str, pos: Pos) -> Result<NodeId, WdlError> {
        self.ids.get(name).copied().ok_or_else(|| {
            let names: Vec<&str> = self.wf.graph.node_weights().map(|n| n.name.as_str()).collect();
            let mut e =
                WdlError::new(ErrorKind::UnknownFunction, pos, format!("unknown function `{name}`")).expected(format!(
                    "one of the functions of this workflow: {}",
                    list_names(names.iter().copied(), 12)
                ));
            if let Some(s) = did_you_mean(name, names.iter().copied()) {
                e = e.hint(format!("did you mean `{s}`?"));
            }
            e
        })
    }

    fn nodes(&mut self, fns: &[FlatFn]) -> Result<(), WdlError> {
        for f in fns {
            let kind = if is_end(f) {
                NodeKind::Join(JoinKind::End)
            } else if is_virtual(f) {
                match f.next.as_ref().map(|n| n.ty.as_str()) {
                    Some("switch") => NodeKind::Switch(Switch { cases: Vec::new() }),
                    Some("foreach") => {
                        return Err(WdlError::new(
                            ErrorKind::Unsupported,
                            f.pos,
                            format!("virtual node `{}` has a foreach `next`", f.name),
                        )
                        .hint("put the foreach on the function that produces the keys"));
                    }
                    _ => NodeKind::Join(JoinKind::Pass),
                }
            } else {
                NodeKind::Task(task_of(f))
            };
            self.add(&f.name, f.pos, kind)?;
        }
        // A `next` may name END without defining it.
        let names_end = fns
            .iter()
            .any(|f| f.next.as_ref().is_some_and(|n| n.nodes.iter().any(|(x, _)| x == "END")));
        if names_end && !self.ids.contains_key("END") {
            self.add("END", Pos::UNKNOWN, NodeKind::Join(JoinKind::End))?;
        }
        Ok(())
    }

    fn control_edges(&mut self, fns: &[FlatFn]) -> Result<(), WdlError> {
        // Foreach bodies first, so that a body's own `next` can be routed through its collect.
        let mut collect_of: BTreeMap<NodeId, NodeId> = BTreeMap::new();
        for f in fns {
            let Some(next) = &f.next else { continue };
            if next.ty != "foreach" {
                continue;
            }
            let producer = self.ids[&f.name];
            let Some((keys, _, keys_size)) = f.outputs.iter().find(|(_, ty, _)| ty == "keys") else {
                return Err(WdlError::new(
                    ErrorKind::ForeachOverNonList,
                    next.pos,
                    format!(
                        "`{}` is followed by a foreach but has no output of type `keys` to iterate over",
                        f.name
                    ),
                )
                .expected("an output declared with `type: keys` (the list of elements)"));
            };
            let width = next
                .nodes
                .iter()
                .filter_map(|(n, _)| fns.iter().find(|g| g.name == *n).and_then(|g| g.split_ratio))
                .max()
                .unwrap_or(3);
            let fe_name = format!("{}.foreach", f.name);
            let fe = self.add(
                &fe_name,
                next.pos,
                NodeKind::Foreach(Foreach {
                    over: DataSource::Output {
                        node: producer,
                        output: keys.clone(),
                    },
                    max_concurrency: 0,
                    width,
                    collect: NodeId::end(),
                }),
            )?;
            let collect = self.add(
                &format!("{}.collect", f.name),
                next.pos,
                NodeKind::Join(JoinKind::Collect),
            )?;
            if let NodeKind::Foreach(x) = &mut self.wf.graph[fe].kind {
                x.collect = collect;
            }
            connect_control(&mut self.wf, producer, fe, None);
            add_data(&mut self.wf, producer, fe, keys, "over", *keys_size);
            for (n, pos) in &next.nodes {
                let body = self.lookup(n, *pos)?;
                if self.wf.graph[body].scope.is_some() {
                    return Err(WdlError::new(
                        ErrorKind::Unsupported,
                        *pos,
                        format!("`{n}` is the body of two foreach steps"),
                    ));
                }
                self.wf.graph[body].scope = Some(fe);
                connect_control(&mut self.wf, fe, body, None);
                connect_control(&mut self.wf, body, collect, None);
                collect_of.insert(body, collect);
            }
        }
        // A foreach body whose own `next` is a foreach would nest scopes the flat form cannot
        // express (FaaSFlow ran one function per element).
        for f in fns {
            let id = self.ids[&f.name];
            if let (Some(next), true) = (&f.next, collect_of.contains_key(&id))
                && next.ty == "foreach"
            {
                return Err(WdlError::new(
                    ErrorKind::Unsupported,
                    next.pos,
                    format!("`{}` runs inside a foreach and starts another foreach", f.name),
                )
                .expected("one function per foreach element, as FaaSFlow ran them")
                .hint("write nested foreach steps in faasflow's WDL (docs/wdl.md)"));
            }
        }
        for f in fns {
            let Some(next) = &f.next else { continue };
            let own = self.ids[&f.name];
            // After a foreach body, its successors follow the collect node.
            let from = collect_of.get(&own).copied().unwrap_or(own);
            match next.ty.as_str() {
                "foreach" => {}
                "switch" => self.switch_edges(f, from, next)?,
                _ => {
                    for (n, pos) in &next.nodes {
                        let to = self.lookup(n, *pos)?;
                        connect_control(&mut self.wf, from, to, None);
                    }
                }
            }
        }
        Ok(())
    }

    fn switch_edges(&mut self, f: &FlatFn, from: NodeId, next: &FlatNext) -> Result<(), WdlError> {
        if next.conditions.len() != next.nodes.len() {
            return Err(WdlError::new(
                ErrorKind::Type,
                next.pos,
                format!(
                    "this switch has {} conditions for {} nodes",
                    next.conditions.len(),
                    next.nodes.len()
                ),
            )
            .expected("one condition per node, in the same order, the last one `default`"));
        }
        if !next.conditions.iter().any(|(c, _)| c.trim() == "default") {
            return Err(WdlError::new(
                ErrorKind::SwitchWithoutDefault,
                next.pos,
                format!("the switch after `{}` has no `default` condition", f.name),
            )
            .expected("`default` as one of the conditions, for the node to run when no other holds")
            .hint("add `- default` to `conditions` and the node to run then to `nodes` (END if nothing should run)"));
        }
        // A switch on a real function goes through a virtual switch node of its own.
        let switch = if matches!(self.wf.graph[from].kind, NodeKind::Switch(_)) {
            from
        } else {
            let s = self.add(
                &format!("{}.switch", f.name),
                next.pos,
                NodeKind::Switch(Switch { cases: Vec::new() }),
            )?;
            connect_control(&mut self.wf, from, s, None);
            s
        };
        let mut cases = Vec::new();
        let mut targets = Vec::new();
        for ((cond, cpos), (n, npos)) in next.conditions.iter().zip(&next.nodes) {
            let to = self.lookup(n, *npos)?;
            if cond.trim() == "default" {
                targets.push((None, to));
            } else {
                targets.push((Some(cases.len() as u32), to));
                cases.push(Case {
                    condition: cond.clone(),
                    pos: *cpos,
                });
            }
        }
        let default = cases.len() as u32;
        for (case, to) in targets {
            connect_control(&mut self.wf, switch, to, Some(case.unwrap_or(default)));
        }
        if let NodeKind::Switch(s) = &mut self.wf.graph[switch].kind {
            s.cases = cases;
        }
        Ok(())
    }

    /// Control ancestors of `n`, grouped by distance (nearest first).
    fn ancestor_levels(&self, n: NodeId) -> Vec<Vec<NodeId>> {
        let mut seen = vec![false; self.wf.graph.node_count()];
        let mut levels = Vec::new();
        let mut frontier = vec![n];
        seen[n.index()] = true;
        while !frontier.is_empty() {
            let mut next = BTreeSet::new();
            for &x in &frontier {
                for e in self.wf.graph.edges_directed(x, Direction::Incoming) {
                    if e.weight().control && !seen[e.source().index()] {
                        seen[e.source().index()] = true;
                        next.insert(e.source());
                    }
                }
            }
            frontier = next.into_iter().collect();
            if !frontier.is_empty() {
                levels.push(frontier.clone());
            }
        }
        levels
    }

    /// The nearest ancestors of `n` that produce `output` (all at the nearest distance).
    fn nearest_producers(&self, n: NodeId, output: &str) -> Vec<NodeId> {
        for level in self.ancestor_levels(n) {
            let found: Vec<NodeId> = level.into_iter().filter(|&a| self.produces(a, output)).collect();
            if !found.is_empty() {
                return found;
            }
        }
        Vec::new()
    }

    fn produces(&self, n: NodeId, output: &str) -> bool {
        self.wf.graph[n].task().is_some_and(|t| t.spec.output(output).is_some())
    }

    fn input_named(&mut self, name: &str) -> DataSource {
        if !self.wf.inputs.iter().any(|i| i.name == name) {
            self.wf.inputs.push(WorkflowInput {
                name: name.to_owned(),
                kind: ValueKind::Json,
                size: 0,
            });
        }
        DataSource::Input(name.to_owned())
    }

    fn data_edges(&mut self, fns: &[FlatFn]) -> Result<(), WdlError> {
        // Producers by output name, for `function: INPUT` matching by parameter.
        let mut producers: BTreeMap<&str, Vec<NodeId>> = BTreeMap::new();
        for f in fns {
            let id = self.ids[&f.name];
            for (o, _, _) in &f.outputs {
                producers.entry(o.as_str()).or_default().push(id);
            }
        }
        for f in fns {
            let consumer = self.ids[&f.name];
            if self.wf.graph[consumer].task().is_none() {
                continue;
            }
            for (i, input) in f.inputs.iter().enumerate() {
                // Other producers at the same distance (branches of a switch): alternatives.
                let mut alternatives: Vec<NodeId> = Vec::new();
                let source = match &input.value {
                    None => self.input_named(&input.name),
                    Some((fun, param, fpos)) if fun == "INPUT" => {
                        let near: Vec<NodeId> = self.nearest_producers(consumer, param);
                        let declared = self.wf.inputs.iter().any(|x| x.name == *param);
                        let others: Vec<NodeId> = producers
                            .get(param.as_str())
                            .map(|v| v.iter().copied().filter(|&p| p != consumer).collect())
                            .unwrap_or_default();
                        if let Some(&p) = near.last() {
                            alternatives = near[..near.len() - 1].iter().rev().copied().collect();
                            DataSource::Output {
                                node: p,
                                output: param.clone(),
                            }
                        } else if declared || others.is_empty() {
                            self.input_named(param)
                        } else if others.len() == 1 {
                            DataSource::Output {
                                node: others[0],
                                output: param.clone(),
                            }
                        } else {
                            let names: Vec<&str> = others.iter().map(|&o| self.wf.graph[o].name.as_str()).collect();
                            return Err(WdlError::new(
                                ErrorKind::Unsupported,
                                *fpos,
                                format!(
                                    "input `{}` of `{}` could come from several functions: {}",
                                    input.name,
                                    f.name,
                                    names.join(", ")
                                ),
                            )
                            .hint("name the producer in `function:` instead of INPUT"));
                        }
                    }
                    Some((fun, param, fpos)) => {
                        let producer = self.lookup(fun, *fpos)?;
                        if producer == consumer {
                            return Err(WdlError::new(
                                ErrorKind::Cycle,
                                *fpos,
                                format!("`{}` reads its own output `{param}`", f.name),
                            ));
                        }
                        let fe_scope = self.wf.graph[consumer].scope;
                        let is_key = input.ty == "key";
                        match (&self.wf.graph[producer].kind, fe_scope) {
                            (NodeKind::Task(_), Some(fe)) if is_key && self.foreach_over_is(fe, producer, param) => {
                                DataSource::Item(fe)
                            }
                            (NodeKind::Task(t), _) => {
                                if t.spec.outputs.is_empty() {
                                    self.declare_by_use(producer, param, input.size.unwrap_or(0));
                                } else if t.spec.output(param).is_none() {
                                    let names: Vec<&str> = t.spec.outputs.iter().map(|o| o.name.as_str()).collect();
                                    let mut e = WdlError::new(
                                        ErrorKind::DanglingReference,
                                        *fpos,
                                        format!("`{fun}` has no output `{param}`"),
                                    )
                                    .expected(format!("one of its outputs: {}", list_names(names.iter().copied(), 12)));
                                    if let Some(s) = did_you_mean(param, names.iter().copied()) {
                                        e = e.hint(format!("did you mean `{s}`?"));
                                    }
                                    return Err(e);
                                }
                                DataSource::Output {
                                    node: producer,
                                    output: param.clone(),
                                }
                            }
                            _ => {
                                return Err(WdlError::new(
                                    ErrorKind::DanglingReference,
                                    *fpos,
                                    format!("`{fun}` is a virtual node and produces nothing"),
                                ));
                            }
                        }
                    }
                };
                // The producer's declared size wins; the consumer's is the fallback.
                let mut size = match self.output_size(&source) {
                    0 => input.size.unwrap_or(0),
                    n => n,
                };
                // A foreach body's output read after the foreach is the list of every element's.
                if let DataSource::Output { node, .. } = &source
                    && let Some(fe) = self.wf.graph[*node]
                        .scope
                        .filter(|fe| self.wf.graph[consumer].scope != Some(*fe))
                    && let NodeKind::Foreach(x) = &self.wf.graph[fe].kind
                {
                    size = size.saturating_mul(u64::from(x.width.max(1)));
                }
                match &source {
                    DataSource::Output { node, output } => {
                        add_data(&mut self.wf, *node, consumer, output, &input.name, size)
                    }
                    DataSource::Item(fe) => add_data(&mut self.wf, *fe, consumer, "item", &input.name, size),
                    _ => {}
                }
                let mut sources = vec![source];
                for p in alternatives {
                    let (output, name) = match &sources[0] {
                        DataSource::Output { output, .. } => (output.clone(), input.name.clone()),
                        _ => continue,
                    };
                    let size = self.output_size(&DataSource::Output {
                        node: p,
                        output: output.clone(),
                    });
                    add_data(&mut self.wf, p, consumer, &output, &name, size);
                    sources.push(DataSource::Output { node: p, output });
                }
                if let NodeKind::Task(t) = &mut self.wf.graph[consumer].kind {
                    t.inputs[i].sources = sources;
                }
            }
        }
        Ok(())
    }

    /// FaaSFlow's `key` inputs read the objects stored under a foreach's keys: inside the
    /// body, the element's share of the producer's other outputs; after the foreach, the
    /// outputs of every element. The planner must see those bytes, so they become data.
    fn key_reads(&mut self, fns: &[FlatFn]) {
        for f in fns {
            let consumer = self.ids[&f.name];
            if self.wf.graph[consumer].task().is_none() {
                continue;
            }
            for input in f.inputs.iter().filter(|i| i.ty == "key") {
                let Some((fun, param, _)) = &input.value else { continue };
                let Some(&producer) = self.ids.get(fun) else { continue };
                let Some(fe) = self
                    .wf
                    .graph
                    .node_indices()
                    .find(|&n| self.foreach_over_is(n, producer, param))
                else {
                    continue;
                };
                let width = match &self.wf.graph[fe].kind {
                    NodeKind::Foreach(x) => u64::from(x.width.max(1)),
                    _ => 1,
                };
                if self.wf.graph[consumer].scope == Some(fe) {
                    let explicit = f
                        .inputs
                        .iter()
                        .any(|i| i.ty != "key" && i.value.as_ref().is_some_and(|(p, _, _)| p == fun));
                    let Some(t) = self.wf.graph[producer].task() else {
                        continue;
                    };
                    let share: u64 = t
                        .spec
                        .outputs
                        .iter()
                        .filter(|o| o.kind != ValueKind::List)
                        .fold(0u64, |acc, o| acc.saturating_add(o.size));
                    if explicit || share == 0 {
                        continue;
                    }
                    if let Some(e) = self.wf.graph.find_edge(fe, consumer) {
                        self.wf.graph[e].bytes = self.wf.graph[e].bytes.saturating_add(share);
                    }
                } else {
                    let bodies: Vec<NodeId> = self
                        .wf
                        .graph
                        .node_indices()
                        .filter(|&n| self.wf.graph[n].scope == Some(fe) && self.wf.graph[n].task().is_some())
                        .collect();
                    for body in bodies {
                        let outs = self.wf.graph[body]
                            .task()
                            .map(|t| t.spec.outputs.clone())
                            .unwrap_or_default();
                        let body_name = self.wf.graph[body].name.clone();
                        for out in outs {
                            let src = DataSource::Output {
                                node: body,
                                output: out.name.clone(),
                            };
                            let Some(t) = self.wf.graph[consumer].task() else {
                                continue;
                            };
                            if t.inputs.iter().any(|i| i.sources.contains(&src)) {
                                continue;
                            }
                            let name = if t.inputs.iter().any(|i| i.name == out.name) {
                                format!("{body_name}.{}", out.name)
                            } else {
                                out.name.clone()
                            };
                            add_data(
                                &mut self.wf,
                                body,
                                consumer,
                                &out.name,
                                &name,
                                out.size.saturating_mul(width),
                            );
                            if let NodeKind::Task(t) = &mut self.wf.graph[consumer].kind {
                                t.inputs.push(InputBinding {
                                    name,
                                    sources: vec![src],
                                });
                            }
                        }
                    }
                }
            }
        }
    }

    /// FaaSFlow's examples often declare no outputs: the first output read from a function
    /// that declares none is declared by that use.
    fn declare_by_use(&mut self, node: NodeId, output: &str, size: u64) {
        if let NodeKind::Task(t) = &mut self.wf.graph[node].kind
            && t.spec.outputs.is_empty()
        {
            t.spec.outputs.push(OutputDecl {
                name: output.to_owned(),
                kind: ValueKind::Bytes,
                size,
            });
        }
    }

    fn foreach_over_is(&self, fe: NodeId, producer: NodeId, param: &str) -> bool {
        matches!(&self.wf.graph[fe].kind, NodeKind::Foreach(f) if f.over == DataSource::Output { node: producer, output: param.to_owned() })
    }

    fn output_size(&self, s: &DataSource) -> u64 {
        match s {
            DataSource::Output { node, output } => self.wf.graph[*node]
                .task()
                .and_then(|t| t.spec.output(output))
                .map_or(0, |o| o.size),
            _ => 0,
        }
    }

    fn conditions(&mut self) -> Result<(), WdlError> {
        let switches: Vec<NodeId> = self
            .wf
            .graph
            .node_indices()
            .filter(|&n| matches!(self.wf.graph[n].kind, NodeKind::Switch(_)))
            .collect();
        for sw in switches {
            let NodeKind::Switch(s) = &self.wf.graph[sw].kind else {
                continue;
            };
            let cases = s.cases.clone();
            let mut translated = Vec::new();
            for c in &cases {
                translated.push(self.translate(sw, c)?);
            }
            if let NodeKind::Switch(s) = &mut self.wf.graph[sw].kind {
                s.cases = translated;
            }
        }
        Ok(())
    }

    /// Translates one Python-like condition, resolving `INPUT.x` to its producer.
    fn translate(&mut self, sw: NodeId, c: &Case) -> Result<Case, WdlError> {
        let tokens = cond::tokenize(&c.condition, c.pos)?;
        let mut read: Vec<(NodeId, String)> = Vec::new();
        let alone = tokens.len() == 1;
        let mut out = Vec::new();
        for t in tokens {
            match t {
                Token::Verbatim(v) => out.push(v),
                Token::Name(n) => {
                    let Some(field) = n.strip_prefix("INPUT.").or_else(|| n.strip_prefix("LOCAL.")) else {
                        return Err(WdlError::new(
                            ErrorKind::Unsupported,
                            c.pos,
                            format!("cannot translate `{n}` in the condition `{}`", c.condition),
                        )
                        .expected("INPUT.<name>: an output of a preceding function or a workflow input"));
                    };
                    let producers = self.nearest_producers(sw, field);
                    let refs: Vec<String> = if producers.is_empty() {
                        self.input_named(field);
                        vec![format!("input.{field}")]
                    } else {
                        producers
                            .iter()
                            .map(|&p| format!("{}.{field}", self.wf.graph[p].name))
                            .collect()
                    };
                    if refs.len() > 1 && !alone {
                        return Err(WdlError::new(ErrorKind::Unsupported, c.pos, format!("`{n}` in `{}` could come from {}", c.condition, refs.join(" or ")))
                            .hint("FaaSFlow took whichever finished last; write the condition in faasflow's WDL and name the producer"));
                    }
                    for &p in &producers {
                        let pname = &self.wf.graph[p].name;
                        if !is_identifier(pname) || !is_identifier(field) {
                            return Err(WdlError::new(
                                ErrorKind::Unsupported,
                                c.pos,
                                format!(
                                    "the condition `{}` reads `{pname}.{field}`, which CEL cannot name",
                                    c.condition
                                ),
                            )
                            .expected("function and output names of letters, digits and `_`")
                            .hint(format!(
                                "rename `{pname}` (or its output `{field}`) in the workflow file"
                            )));
                        }
                        self.json_outputs.insert((p, field.to_owned()));
                        read.push((p, field.to_owned()));
                    }
                    out.push(if refs.len() > 1 {
                        format!("({})", refs.join(" || "))
                    } else {
                        refs[0].clone()
                    });
                }
            }
        }
        let text = cond::join(&out);
        let cel_cond = Condition {
            text: text.clone(),
            pos: c.pos,
        };
        check_cel_syntax(&cel_cond).map_err(|mut e| {
            e.message = format!("{} (translated from FaaSFlow's `{}`)", e.message, c.condition);
            e
        })?;
        for (p, field) in read {
            let size = self.output_size(&DataSource::Output {
                node: p,
                output: field.clone(),
            });
            let key = format!("{}.{field}", self.wf.graph[p].name);
            add_data(&mut self.wf, p, sw, &field, &key, size);
        }
        Ok(Case {
            condition: text,
            pos: c.pos,
        })
    }

    fn outputs(&mut self, go: &Yaml) -> Result<(), WdlError> {
        for (k, v) in go.map("`global_output`: a mapping of outputs")? {
            let (name, _) = k.name("an output name")?;
            let mut f = Fields::new(v, "a global output")?;
            let _ = f.get("type");
            let value = f.get("value");
            let _ = f.get("size");
            f.finish(&["type", "value", "size"])?;
            let mut sources = Vec::new();
            for item in value.map(|v| v.one_or_many()).unwrap_or_default() {
                let mut vf = Fields::new(item, "an output value")?;
                let fun = vf.req("function", "the producing function")?.name("a function name")?;
                let param = vf.req("parameter", "the output's name")?.name("an output name")?.0;
                vf.finish(&["function", "parameter"])?;
                if fun.0 == "INPUT" {
                    sources.push(self.input_named(&param));
                    continue;
                }
                let p = self.lookup(&fun.0, fun.1)?;
                let ok = self.wf.graph[p]
                    .task()
                    .is_some_and(|t| t.spec.output(&param).is_some() || t.spec.outputs.is_empty());
                if !ok {
                    self.warnings.push(
                        WdlError::new(ErrorKind::DanglingReference, fun.1, format!("global output `{name}` names `{}.{param}`, which `{}` does not produce; this alternative is ignored", fun.0, fun.0)),
                    );
                    continue;
                }
                self.declare_by_use(p, &param, 0);
                sources.push(DataSource::Output { node: p, output: param });
            }
            self.wf.outputs.push(WorkflowOutput { name, sources });
        }
        Ok(())
    }

    fn mark_json_outputs(&mut self) {
        for (n, o) in std::mem::take(&mut self.json_outputs) {
            if let NodeKind::Task(t) = &mut self.wf.graph[n].kind {
                for d in t.spec.outputs.iter_mut().filter(|d| d.name == o) {
                    d.kind = ValueKind::Json;
                }
            }
        }
    }
}

fn task_of(f: &FlatFn) -> Task {
    let mut spec: FunctionSpec = default_spec();
    spec.memory_mib = FAASFLOW_MEMORY_MIB;
    spec.runtime_ms = f.runtime_ms;
    spec.scale = f.scale;
    spec.memory_use_mib = match f.mem_usage {
        Some(u) if u <= 1.0 => u * FAASFLOW_MEMORY_MIB as f64,
        Some(mib) => mib,
        None => FAASFLOW_MEMORY_MIB as f64 / 2.0,
    };
    spec.outputs = f
        .outputs
        .iter()
        .map(|(name, ty, size)| OutputDecl {
            name: name.clone(),
            kind: if ty == "keys" {
                ValueKind::List
            } else {
                ValueKind::Bytes
            },
            size: *size,
        })
        .collect();
    let inputs = f
        .inputs
        .iter()
        .map(|i| InputBinding {
            name: i.name.clone(),
            sources: Vec::new(),
        })
        .collect();
    Task {
        function: f.source.clone(),
        spec,
        inputs,
    }
}
