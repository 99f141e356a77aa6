//! The structure of a workflow becomes nodes and control edges: a sequence chains its steps, a
//! parallel fans out (through a barrier when both sides are many), a switch gets a virtual node
//! whose out-edges carry case numbers, a foreach a virtual fan-out node and a collect node, and
//! a task with a catch step an on-failure edge to it. References are queued as [`Pending`], to
//! be resolved once every node exists.

use super::conditions::check_cel_syntax;
use super::graph::connect_control;
use super::names::check_step_name;
use super::{Compiler, DEFAULT_ELEMENT, Pending, Pred};
use crate::error::{ErrorKind, Pos, WdlError, did_you_mean, list_names};
use crate::wdl::{Step, TaskStep};
use faasflow_core::dag::{
    CATCH_INPUT, Case, DataSource, Edge, Foreach, InputBinding, JoinKind, Node, NodeId, NodeKind, Switch, Task,
};

impl Compiler<'_> {
    pub(super) fn steps(&mut self, steps: &[Step], mut preds: Vec<Pred>) -> Result<Vec<Pred>, WdlError> {
        for s in steps {
            preds = self.step(s, preds)?;
        }
        Ok(preds)
    }

    fn step(&mut self, step: &Step, preds: Vec<Pred>) -> Result<Vec<Pred>, WdlError> {
        match step {
            Step::Task(t) => {
                let node = self.task(t, &preds)?;
                let mut exits = vec![Pred { node, case: None }];
                if let Some(c) = &t.catch {
                    if let Some((name, pos)) = c.inputs.iter().map(|(n, _)| n).find(|n| n.0 == CATCH_INPUT) {
                        return Err(WdlError::new(
                            ErrorKind::DuplicateName,
                            *pos,
                            format!("catch step `{}` declares an input `{name}`", c.name.0),
                        )
                        .expected(format!("inputs other than `{CATCH_INPUT}`"))
                        .hint(format!(
                            "a catch step receives the failure of `{}` as its input `{CATCH_INPUT}`",
                            t.name.0
                        )));
                    }
                    let catch = self.task(c, &[])?;
                    self.wf.graph.add_edge(
                        node,
                        catch,
                        Edge {
                            control: true,
                            on_failure: true,
                            ..Edge::default()
                        },
                    );
                    self.catches.insert(node, catch);
                    exits.push(Pred {
                        node: catch,
                        case: None,
                    });
                }
                Ok(exits)
            }
            Step::Sequence { steps, .. } => self.steps(steps, preds),
            Step::Parallel { name, pos, branches } => {
                if branches.is_empty() {
                    return Ok(preds);
                }
                let mut preds = preds;
                if preds.len() > 1 && branches.len() > 1 {
                    // One barrier instead of preds × branches edges.
                    let join = self.add_virtual(name.as_ref(), "parallel", *pos, NodeKind::Join(JoinKind::Parallel))?;
                    self.connect(&preds, join);
                    preds = vec![Pred { node: join, case: None }];
                }
                let mut exits = Vec::new();
                for b in branches {
                    for p in self.steps(b, preds.clone())? {
                        if !exits.contains(&p) {
                            exits.push(p);
                        }
                    }
                }
                Ok(exits)
            }
            Step::Switch {
                name,
                pos,
                cases,
                default,
            } => {
                let cases_dag = cases
                    .iter()
                    .map(|(c, _)| Case {
                        condition: c.text.clone(),
                        pos: c.pos,
                    })
                    .collect();
                let node = self.add_virtual(
                    name.as_ref(),
                    "switch",
                    *pos,
                    NodeKind::Switch(Switch { cases: cases_dag }),
                )?;
                self.connect(&preds, node);
                let mut exits = Vec::new();
                let branches = cases
                    .iter()
                    .map(|(c, b)| (Some(c), b))
                    .chain(std::iter::once((None, default)));
                for (i, (cond, branch)) in branches.enumerate() {
                    if let Some(cond) = cond {
                        check_cel_syntax(cond)?;
                        self.pending.push(Pending::Condition {
                            node,
                            cond: cond.clone(),
                            elements: self.elements.clone(),
                        });
                    }
                    self.cases.push((node, i as u32));
                    let branch_exits = self.steps(
                        branch,
                        vec![Pred {
                            node,
                            case: Some(i as u32),
                        }],
                    );
                    self.cases.pop();
                    exits.extend(branch_exits?);
                }
                Ok(exits)
            }
            Step::Foreach {
                name,
                pos,
                over,
                max_concurrency,
                width,
                body,
            } => {
                let fe = Foreach {
                    over: DataSource::Input(String::new()),
                    max_concurrency: *max_concurrency,
                    width: *width,
                    collect: NodeId::end(),
                };
                let node = self.add_virtual(name.as_ref(), "foreach", *pos, NodeKind::Foreach(fe))?;
                self.connect(&preds, node);
                self.pending.push(Pending::Over {
                    node,
                    over: over.clone(),
                    elements: self.elements.clone(),
                });
                let element = name.as_ref().map_or(DEFAULT_ELEMENT.to_owned(), |n| n.0.clone());
                self.elements.push((element, node));
                let exits = self.steps(body, vec![Pred { node, case: None }]);
                self.elements.pop();
                let exits = exits?;
                let collect_name = format!("{}.collect", self.wf.graph[node].name);
                let collect = self.add_node(&collect_name, *pos, NodeKind::Join(JoinKind::Collect))?;
                self.connect(&exits, collect);
                if let NodeKind::Foreach(f) = &mut self.wf.graph[node].kind {
                    f.collect = collect;
                }
                Ok(vec![Pred {
                    node: collect,
                    case: None,
                }])
            }
        }
    }

    /// Adds a task step's node after `preds`; its inputs resolve once every node exists.
    fn task(&mut self, t: &TaskStep, preds: &[Pred]) -> Result<NodeId, WdlError> {
        let Some(decl) = self.functions.get(t.function.0.as_str()).copied() else {
            return Err(self.unknown_function(&t.function));
        };
        let inputs = t
            .inputs
            .iter()
            .map(|(n, _)| InputBinding {
                name: n.0.clone(),
                sources: Vec::new(),
            })
            .collect();
        let task = Task {
            function: t.function.0.clone(),
            spec: decl.spec.clone(),
            inputs,
        };
        check_step_name(&t.name.0, t.name.1)?;
        let node = self.add_node(&t.name.0, t.name.1, NodeKind::Task(task))?;
        self.connect(preds, node);
        for (i, (_, refs)) in t.inputs.iter().enumerate() {
            self.pending.push(Pending::Input {
                node,
                input: i,
                refs: refs.clone(),
                elements: self.elements.clone(),
            });
        }
        Ok(node)
    }

    fn unknown_function(&self, name: &(String, Pos)) -> WdlError {
        let known = self.functions.keys().copied();
        let mut err = WdlError::new(
            ErrorKind::UnknownFunction,
            name.1,
            format!("unknown function `{}`", name.0),
        )
        .expected(format!(
            "one of the functions declared under `functions:` ({})",
            list_names(known.clone(), 12)
        ));
        err = match did_you_mean(&name.0, known) {
            Some(s) => err.hint(format!("did you mean `{s}`?")),
            None => err.hint(format!(
                "declare it under `functions:` (for example `{}: {{pack: my-pack}}`)",
                name.0
            )),
        };
        err
    }

    fn add_virtual(
        &mut self,
        name: Option<&(String, Pos)>,
        kind: &str,
        pos: Pos,
        nk: NodeKind,
    ) -> Result<NodeId, WdlError> {
        match name {
            Some((n, p)) => {
                check_step_name(n, *p)?;
                self.add_node(n, *p, nk)
            }
            None => self.add_node(&format!("{kind}@{}:{}", pos.line, pos.col), pos, nk),
        }
    }

    fn add_node(&mut self, name: &str, pos: Pos, kind: NodeKind) -> Result<NodeId, WdlError> {
        if name == "input" || name == DEFAULT_ELEMENT {
            return Err(
                WdlError::new(ErrorKind::DuplicateName, pos, format!("the name `{name}` is reserved"))
                    .expected("a step name other than `input` and `each`")
                    .hint("`input.x` reads the workflow's inputs and `each.item` a foreach element; rename the step"),
            );
        }
        if let Some(&first) = self.names.get(name) {
            let first_pos = self.wf.graph[first].pos;
            return Err(WdlError::new(ErrorKind::DuplicateName, pos, format!("the name `{name}` is used twice"))
                .expected("a name no other step has")
                .hint(format!("it was first used at line {}, column {}; rename one of them (`function:` lets two tasks call one function)", first_pos.line, first_pos.col)));
        }
        let scope = self.elements.last().map(|(_, n)| *n);
        self.case_path.push(self.cases.clone());
        let node = self.wf.graph.add_node(Node {
            name: name.to_owned(),
            pos,
            kind,
            scope,
        });
        self.names.insert(name.to_owned(), node);
        Ok(node)
    }

    fn connect(&mut self, preds: &[Pred], node: NodeId) {
        for p in preds {
            connect_control(&mut self.wf, p.node, node, p.case);
        }
    }
}
