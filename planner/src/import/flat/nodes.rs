//! Functions become nodes (tasks, or virtual switch and join nodes) and their `next` entries
//! control edges: a foreach gets a fan-out node over the producer's `keys` output and a collect
//! node, and a switch a virtual switch node whose out-edges carry case numbers.

use std::collections::BTreeMap;

use super::Importer;
use super::decode::{FlatFn, FlatNext};
use crate::compile::{add_data, connect_control};
use crate::error::{ErrorKind, Pos, WdlError, did_you_mean, list_names};
use crate::import::FAASFLOW_MEMORY_MIB;
use crate::wdl::default_spec;
use faasflow_core::dag::{
    Case, DataSource, Foreach, FunctionSpec, InputBinding, JoinKind, Node, NodeId, NodeKind, OutputDecl, Switch, Task,
    ValueKind,
};

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

    pub(super) fn lookup(&self, name: &str, pos: Pos) -> Result<NodeId, WdlError> {
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

    pub(super) fn nodes(&mut self, fns: &[FlatFn]) -> Result<(), WdlError> {
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

    pub(super) fn control_edges(&mut self, fns: &[FlatFn]) -> Result<(), WdlError> {
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
