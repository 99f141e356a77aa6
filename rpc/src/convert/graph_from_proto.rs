//! Decoding a workflow graph from the wire (untrusted): every node and edge checked against
//! the kinds of all nodes (indices in range, switch cases and foreach references consistent),
//! foreach scopes without cycles, names unique, and the graph acyclic.

use std::collections::HashMap;

use faasflow_core::Pos;
use faasflow_core::dag::{
    Case, DataSource, Edge, Foreach, FunctionSpec, InputBinding, Node, NodeId, NodeKind, OutputDecl, PythonFunction,
    Retry, Switch, Task, Workflow, WorkflowInput, WorkflowOutput,
};
use faasflow_proto::v1 as pb;
use petgraph::graph::{DiGraph, NodeIndex};

use super::ConvertError;
use super::enums::{
    failure_kinds_from_proto, format_from_proto, isolation_from_proto, join_kind_from_proto, value_kind_from_proto,
};
use super::error::{missing, non_negative};
use super::to_proto::{node_index, node_indices};

/// Node and edge lists may have at most this many entries: petgraph's `u32` indices reserve
/// `u32::MAX`.
const MAX_ITEMS: usize = u32::MAX as usize - 1;

/// Decodes and validates a compiled workflow graph: indices in range, enums known, switch and
/// foreach references consistent, scopes pointing at foreach nodes, node names unique, and the
/// graph acyclic.
pub fn workflow_from_proto(g: &pb::WorkflowGraph) -> Result<Workflow, ConvertError> {
    let format = format_from_proto(g.format)?;
    for (field, len) in [("graph.nodes", g.nodes.len()), ("graph.edges", g.edges.len())] {
        if len > MAX_ITEMS {
            return Err(ConvertError::TooMany {
                field,
                len,
                max: MAX_ITEMS,
            });
        }
    }
    let shapes = g
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| Shape::of(n, i))
        .collect::<Result<Vec<_>, _>>()?;
    let cx = Nodes { shapes: &shapes };

    let mut graph: DiGraph<Node, Edge, u32> = DiGraph::with_capacity(g.nodes.len(), g.edges.len());
    let mut names: HashMap<&str, usize> = HashMap::with_capacity(g.nodes.len());
    for (i, n) in g.nodes.iter().enumerate() {
        if let Some(first) = names.insert(&n.name, i) {
            return Err(ConvertError::DuplicateName {
                field: format!("graph.nodes[{i}].name"),
                name: n.name.clone(),
                first: format!("graph.nodes[{first}].name"),
            });
        }
        graph.add_node(cx.node(n, i)?);
    }
    check_scopes(&graph)?;

    for (i, e) in g.edges.iter().enumerate() {
        let (source, target, edge) = cx.edge(e, i)?;
        graph.add_edge(source, target, edge);
    }
    if let Err(cycle) = faasflow_core::graph::topo_order(&graph) {
        return Err(ConvertError::Cycle {
            nodes: node_indices(&cycle),
        });
    }

    let inputs = g
        .inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            Ok(WorkflowInput {
                name: input.name.clone(),
                kind: value_kind_from_proto(input.kind, || format!("graph.inputs[{i}].kind"))?,
                size: input.size,
            })
        })
        .collect::<Result<_, ConvertError>>()?;
    let outputs = g
        .outputs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            Ok(WorkflowOutput {
                name: o.name.clone(),
                sources: cx.sources(&o.sources, &|| format!("graph.outputs[{i}].sources"))?,
            })
        })
        .collect::<Result<_, ConvertError>>()?;
    let contention = g
        .contention
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let a = cx.node_ref(c.a, || format!("graph.contention[{i}].a"))?;
            let b = cx.node_ref(c.b, || format!("graph.contention[{i}].b"))?;
            Ok((a, b))
        })
        .collect::<Result<_, ConvertError>>()?;

    Ok(Workflow {
        name: g.name.clone(),
        format,
        graph,
        inputs,
        outputs,
        contention,
        deadline_ms: (g.deadline_ms > 0).then_some(g.deadline_ms),
    })
}

/// What [`Nodes`] needs to know about every node to check references to it before the nodes
/// themselves are built.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Task,
    Switch { cases: usize },
    Foreach,
    Join,
}

impl Shape {
    fn of(n: &pb::Node, i: usize) -> Result<Shape, ConvertError> {
        use pb::node::Kind;
        match &n.kind {
            Some(Kind::Task(_)) => Ok(Shape::Task),
            Some(Kind::Switch(s)) => Ok(Shape::Switch { cases: s.cases.len() }),
            Some(Kind::Foreach(_)) => Ok(Shape::Foreach),
            Some(Kind::Join(_)) => Ok(Shape::Join),
            None => Err(ConvertError::Missing {
                field: format!("graph.nodes[{i}].kind"),
            }),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Shape::Task => "task",
            Shape::Switch { .. } => "switch",
            Shape::Foreach => "foreach",
            Shape::Join => "join",
        }
    }
}

/// Builds nodes and edges, checking every node reference against the shapes of all nodes.
#[derive(Debug)]
struct Nodes<'a> {
    shapes: &'a [Shape],
}

impl Nodes<'_> {
    fn node(&self, n: &pb::Node, i: usize) -> Result<Node, ConvertError> {
        use pb::node::Kind;
        let at = |rest: &str| format!("graph.nodes[{i}].{rest}");
        let kind = match &n.kind {
            Some(Kind::Task(t)) => NodeKind::Task(self.task(t, i)?),
            Some(Kind::Switch(s)) => NodeKind::Switch(Switch {
                cases: s
                    .cases
                    .iter()
                    .map(|c| Case {
                        condition: c.condition.clone(),
                        pos: Pos::new(c.line, c.col),
                    })
                    .collect(),
            }),
            Some(Kind::Foreach(f)) => NodeKind::Foreach(Foreach {
                over: self.source(f.over.as_ref().ok_or_else(|| missing(&at("foreach.over")))?, &|| {
                    at("foreach.over")
                })?,
                max_concurrency: f.max_concurrency,
                width: f.width,
                collect: self.collect(f.collect, || at("foreach.collect"))?,
            }),
            Some(Kind::Join(j)) => NodeKind::Join(join_kind_from_proto(*j, || at("join"))?),
            None => return Err(missing(&at("kind"))),
        };
        let scope = n.scope.map(|s| self.foreach(s, || at("scope"))).transpose()?;
        Ok(Node {
            name: n.name.clone(),
            pos: Pos::new(n.line, n.col),
            kind,
            scope,
        })
    }

    fn task(&self, t: &pb::Task, i: usize) -> Result<Task, ConvertError> {
        let at = |rest: &str| format!("graph.nodes[{i}].task.{rest}");
        let spec = t.spec.as_ref().ok_or_else(|| missing(&at("spec")))?;
        let retry = spec.retry.as_ref().ok_or_else(|| missing(&at("spec.retry")))?;
        let jitter = non_negative(retry.jitter, || at("spec.retry.jitter"))?;
        if jitter > 1.0 {
            return Err(ConvertError::InvalidNumber {
                field: at("spec.retry.jitter"),
                value: jitter,
                range: "a fraction from 0.0 to 1.0",
            });
        }
        let spec = FunctionSpec {
            pack: spec.pack.clone(),
            image: spec.image.clone(),
            memory_mib: spec.memory_mib,
            cpu_millis: spec.cpu_millis,
            timeout_ms: spec.timeout_ms,
            retry: Retry {
                attempts: retry.attempts,
                backoff_ms: retry.backoff_ms,
                jitter,
                on: failure_kinds_from_proto(&retry.on, || at("spec.retry.on"))?,
            },
            isolation: isolation_from_proto(spec.isolation, || at("spec.isolation"))?,
            network: spec.network,
            idempotent: spec.idempotent,
            python: spec
                .python
                .as_ref()
                .map(|p| python_from_proto(p, &at).map(Box::new))
                .transpose()?,
            scale: spec.scale,
            runtime_ms: non_negative(spec.runtime_ms, || at("spec.runtime_ms"))?,
            memory_use_mib: non_negative(spec.memory_use_mib, || at("spec.memory_use_mib"))?,
            outputs: spec
                .outputs
                .iter()
                .enumerate()
                .map(|(j, o)| {
                    Ok(OutputDecl {
                        name: o.name.clone(),
                        kind: value_kind_from_proto(o.kind, || at(&format!("spec.outputs[{j}].kind")))?,
                        size: o.size,
                    })
                })
                .collect::<Result<_, ConvertError>>()?,
        };
        let inputs = t
            .inputs
            .iter()
            .enumerate()
            .map(|(j, b)| {
                Ok(InputBinding {
                    name: b.name.clone(),
                    sources: self.sources(&b.sources, &|| at(&format!("inputs[{j}].sources")))?,
                })
            })
            .collect::<Result<_, ConvertError>>()?;
        Ok(Task {
            function: t.function.clone(),
            spec,
            inputs,
        })
    }

    fn edge(&self, e: &pb::Edge, i: usize) -> Result<(NodeId, NodeId, Edge), ConvertError> {
        let at = |rest: &str| format!("graph.edges[{i}].{rest}");
        let (source, source_shape) = self.checked(e.source, || at("source"))?;
        let target = self.node_ref(e.target, || at("target"))?;
        if let Some(case) = e.case {
            match source_shape {
                Shape::Switch { cases } => {
                    if usize::try_from(case).map_or(true, |c| c > cases) {
                        return Err(ConvertError::CaseOutOfRange {
                            field: at("case"),
                            case,
                            switch: e.source,
                            cases,
                        });
                    }
                }
                other => {
                    return Err(ConvertError::CaseWithoutSwitch {
                        field: at("case"),
                        node: e.source,
                        kind: other.as_str(),
                    });
                }
            }
        }
        if e.on_failure && (!matches!(source_shape, Shape::Task) || !e.control || e.case.is_some()) {
            return Err(ConvertError::Invalid {
                field: at("on_failure"),
                reason: format!(
                    "is set, but the edge is not a control edge without a case leaving a task (its source, node {}, is a {} node)",
                    e.source,
                    source_shape.as_str()
                ),
            });
        }
        let edge = Edge {
            control: e.control,
            case: e.case,
            data: e.data.iter().map(|d| (d.output.clone(), d.input.clone())).collect(),
            bytes: e.bytes,
            on_failure: e.on_failure,
        };
        Ok((source, target, edge))
    }

    fn sources(&self, sources: &[pb::DataSource], at: &dyn Fn() -> String) -> Result<Vec<DataSource>, ConvertError> {
        sources
            .iter()
            .enumerate()
            .map(|(k, s)| self.source(s, &|| format!("{}[{k}]", at())))
            .collect()
    }

    fn source(&self, s: &pb::DataSource, at: &dyn Fn() -> String) -> Result<DataSource, ConvertError> {
        use pb::data_source::Source;
        match &s.source {
            Some(Source::Input(name)) => Ok(DataSource::Input(name.clone())),
            Some(Source::Output(o)) => Ok(DataSource::Output {
                node: self.node_ref(o.node, || format!("{}.output.node", at()))?,
                output: o.output.clone(),
            }),
            Some(Source::Item(n)) => Ok(DataSource::Item(self.foreach(*n, || format!("{}.item", at()))?)),
            Some(Source::Index(n)) => Ok(DataSource::Index(self.foreach(*n, || format!("{}.index", at()))?)),
            None => Err(ConvertError::Missing {
                field: format!("{}.source", at()),
            }),
        }
    }

    fn node_ref(&self, n: u32, at: impl FnOnce() -> String) -> Result<NodeId, ConvertError> {
        self.checked(n, at).map(|(id, _)| id)
    }

    /// A node reference, range-checked, with the shape of the node it names.
    fn checked(&self, n: u32, at: impl FnOnce() -> String) -> Result<(NodeId, Shape), ConvertError> {
        match usize::try_from(n).ok().and_then(|i| Some((i, *self.shapes.get(i)?))) {
            Some((i, shape)) => Ok((NodeIndex::new(i), shape)),
            None => Err(ConvertError::IndexOutOfRange {
                field: at(),
                index: n,
                len: self.shapes.len(),
                what: "nodes",
            }),
        }
    }

    /// A reference that must name a foreach node.
    fn foreach(&self, n: u32, at: impl Fn() -> String) -> Result<NodeId, ConvertError> {
        match self.checked(n, &at)? {
            (id, Shape::Foreach) => Ok(id),
            (_, other) => Err(ConvertError::NotAForeach {
                field: at(),
                node: n,
                kind: other.as_str(),
            }),
        }
    }

    /// A foreach's collect node, which must be a join node.
    fn collect(&self, n: u32, at: impl Fn() -> String) -> Result<NodeId, ConvertError> {
        match self.checked(n, &at)? {
            (id, Shape::Join) => Ok(id),
            (_, other) => Err(ConvertError::CollectNotJoin {
                field: at(),
                node: n,
                kind: other.as_str(),
            }),
        }
    }
}

/// Rejects a foreach that is (directly or through other foreach nodes) inside itself, so that
/// walking a node's scopes outwards always ends. Every `scope` already names a foreach node.
fn check_scopes(graph: &DiGraph<Node, Edge, u32>) -> Result<(), ConvertError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unvisited,
        OnPath,
        Done,
    }
    let mut marks = vec![Mark::Unvisited; graph.node_count()];
    let mut path = Vec::new();
    for start in graph.node_indices() {
        let mut cur = Some(start);
        while let Some(n) = cur {
            match marks.get(n.index()).copied() {
                Some(Mark::Unvisited) => {}
                Some(Mark::OnPath) => {
                    return Err(ConvertError::ScopeCycle { node: node_index(n) });
                }
                Some(Mark::Done) | None => break,
            }
            if let Some(m) = marks.get_mut(n.index()) {
                *m = Mark::OnPath;
            }
            path.push(n);
            cur = graph.node_weight(n).and_then(|node| node.scope);
        }
        for n in path.drain(..) {
            if let Some(m) = marks.get_mut(n.index()) {
                *m = Mark::Done;
            }
        }
    }
    Ok(())
}

/// A Python function from the wire: a well-formed handler, an absolute code directory and
/// module names for requirements (they become a command line).
fn python_from_proto(p: &pb::PythonFunction, at: &impl Fn(&str) -> String) -> Result<PythonFunction, ConvertError> {
    let invalid = |field: &str, reason: String| ConvertError::Invalid {
        field: at(field),
        reason,
    };
    if PythonFunction::split_handler(&p.handler).is_none() {
        return Err(invalid(
            "spec.python.handler",
            format!("`{}` is not of the form module:function", p.handler),
        ));
    }
    if !p.code.starts_with('/') || p.code.contains('\0') {
        return Err(invalid(
            "spec.python.code",
            format!("`{}` is not an absolute directory", p.code),
        ));
    }
    if let Some(bad) = p.requirements.iter().find(|r| !PythonFunction::is_module(r)) {
        return Err(invalid(
            "spec.python.requirements",
            format!("`{bad}` is not a module name"),
        ));
    }
    Ok(PythonFunction {
        handler: p.handler.clone(),
        code: p.code.clone(),
        requirements: p.requirements.clone(),
        faasflow_v1: p.faasflow_v1,
    })
}
