//! Data edges: the producer of every function input (named, or found by its output's name
//! among the nearest ancestors for `function: INPUT`, else a workflow input), the bytes that
//! FaaSFlow's `key` inputs read, and the sources of the workflow's outputs.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::Direction;
use petgraph::visit::EdgeRef;

use super::Importer;
use super::decode::FlatFn;
use crate::compile::add_data;
use crate::error::{ErrorKind, WdlError, did_you_mean, list_names};
use crate::yaml::{Fields, Yaml};
use faasflow_core::dag::{
    DataSource, InputBinding, NodeId, NodeKind, OutputDecl, ValueKind, WorkflowInput, WorkflowOutput,
};

impl Importer {
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
    pub(super) fn nearest_producers(&self, n: NodeId, output: &str) -> Vec<NodeId> {
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

    pub(super) fn input_named(&mut self, name: &str) -> DataSource {
        if !self.wf.inputs.iter().any(|i| i.name == name) {
            self.wf.inputs.push(WorkflowInput {
                name: name.to_owned(),
                kind: ValueKind::Json,
                size: 0,
            });
        }
        DataSource::Input(name.to_owned())
    }

    pub(super) fn data_edges(&mut self, fns: &[FlatFn]) -> Result<(), WdlError> {
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
    pub(super) fn key_reads(&mut self, fns: &[FlatFn]) {
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

    pub(super) fn output_size(&self, s: &DataSource) -> u64 {
        match s {
            DataSource::Output { node, output } => self.wf.graph[*node]
                .task()
                .and_then(|t| t.spec.output(output))
                .map_or(0, |o| o.size),
            _ => 0,
        }
    }

    pub(super) fn outputs(&mut self, go: &Yaml) -> Result<(), WdlError> {
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
}
