//! The compiler: a WDL [`Document`] becomes a [`Workflow`] DAG.
//!
//! Structure becomes control edges (a sequence chains its steps, a parallel fans out, a switch
//! gets a virtual node whose out-edges carry case numbers, a foreach gets a virtual fan-out
//! node and a collect node); references become data edges. Names and references are checked
//! here, with the whole workflow in view, so forward references are reported as cycles rather
//! than as unknown names.

use std::collections::{BTreeMap, HashMap};

use petgraph::visit::EdgeRef;

use crate::error::{ErrorKind, Pos, WdlError, did_you_mean, list_names};
use crate::wdl::{Condition, Document, FunctionDecl, Ref, Step, TaskStep};
use faasflow_core::dag::{
    Case, DataSource, Edge, Foreach, InputBinding, JoinKind, Node, NodeId, NodeKind, SourceFormat, Switch, Task,
    ValueKind, Workflow, WorkflowInput, WorkflowOutput,
};

pub use faasflow_core::dag::CATCH_INPUT;

/// The element name a foreach body uses when the foreach has no name.
pub const DEFAULT_ELEMENT: &str = "each";

/// A predecessor of the next step: a node and, for a switch, the case that leads on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pred {
    node: NodeId,
    case: Option<u32>,
}

/// A reference waiting for every node to exist.
#[derive(Debug)]
enum Pending {
    Input {
        node: NodeId,
        input: usize,
        refs: Vec<Ref>,
        elements: Vec<(String, NodeId)>,
    },
    Condition {
        node: NodeId,
        cond: Condition,
        elements: Vec<(String, NodeId)>,
    },
    Over {
        node: NodeId,
        over: Ref,
        elements: Vec<(String, NodeId)>,
    },
    Output {
        index: usize,
        refs: Vec<Ref>,
    },
}

/// Compiles a decoded document.
pub fn compile(doc: &Document, format: SourceFormat) -> Result<Workflow, WdlError> {
    let mut c = Compiler {
        doc,
        wf: Workflow::new(doc.name.0.clone(), format),
        functions: BTreeMap::new(),
        names: HashMap::new(),
        pending: Vec::new(),
        elements: Vec::new(),
        cases: Vec::new(),
        case_path: Vec::new(),
        catches: HashMap::new(),
    };
    check_name("the workflow's name", &doc.name.0, doc.name.1)?;
    for f in &doc.functions {
        check_name("the function name", &f.name.0, f.name.1)?;
        c.functions.insert(f.name.0.as_str(), f);
    }
    if let Some(inputs) = &doc.inputs {
        for i in inputs {
            if c.wf.inputs.iter().any(|x| x.name == i.name.0) {
                return Err(WdlError::new(
                    ErrorKind::DuplicateName,
                    i.name.1,
                    format!("input `{}` is declared twice", i.name.0),
                ));
            }
            c.wf.inputs.push(WorkflowInput {
                name: i.name.0.clone(),
                kind: i.kind,
                size: i.size,
            });
        }
    }
    c.steps(&doc.steps, Vec::new())?;
    for (i, (name, refs)) in doc.output.iter().enumerate() {
        c.wf.outputs.push(WorkflowOutput {
            name: name.0.clone(),
            sources: Vec::new(),
        });
        c.pending.push(Pending::Output {
            index: i,
            refs: refs.clone(),
        });
    }
    let pending = std::mem::take(&mut c.pending);
    for p in pending {
        c.resolve(p)?;
    }
    for (a, b) in &doc.contention {
        if a.0 == b.0 {
            return Err(WdlError::new(
                ErrorKind::Type,
                b.1,
                format!("the contention pair names `{}` twice", a.0),
            )
            .expected("two different tasks"));
        }
        let a = c.task_named(a)?;
        let b = c.task_named(b)?;
        c.wf.contention.push((a, b));
    }
    c.wf.deadline_ms = doc.deadline_ms;
    check_acyclic(&c.wf)?;
    Ok(c.wf)
}

/// Longest name (of a workflow, a step or a function) accepted, bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// Names go into logs, reports and messages: a name holds no control character (a line break
/// would forge a log line) and at most [`MAX_NAME_BYTES`]. `what` says whose name it is.
pub fn check_name(what: &str, name: &str, pos: Pos) -> Result<(), WdlError> {
    let expected = format!("a name of at most {MAX_NAME_BYTES} bytes, without control characters");
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(WdlError::new(
            ErrorKind::Type,
            pos,
            format!(
                "{what} `{}` holds a control character ({}, U+{:04X})",
                shown(name),
                c.escape_debug(),
                u32::from(c)
            ),
        )
        .expected(expected)
        .hint("remove the line break, tab or other control character"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(WdlError::new(
            ErrorKind::Type,
            pos,
            format!("{what} `{}` is {} bytes long", shown(name), name.len()),
        )
        .expected(expected)
        .hint("shorten it"));
    }
    Ok(())
}

/// The start of a name, with control characters escaped, for a message.
fn shown(name: &str) -> String {
    const SHOWN: usize = 32;
    let mut s: String = name.chars().take(SHOWN).flat_map(char::escape_debug).collect();
    if name.chars().nth(SHOWN).is_some() {
        s.push('…');
    }
    s
}

/// Step names are read back in references (`step.output`): no dots, no spaces.
fn check_step_name(name: &str, pos: Pos) -> Result<(), WdlError> {
    check_name("the step name", name, pos)?;
    if !is_identifier(name) {
        let fixed: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let fixed = if fixed.starts_with(|c: char| c.is_ascii_digit()) {
            format!("_{fixed}")
        } else {
            fixed
        };
        return Err(WdlError::new(ErrorKind::Type, pos, format!("`{name}` cannot be a step name"))
            .expected("letters, digits and `_`, not starting with a digit, so that `<name>.<output>` can be read in references and CEL conditions")
            .hint(format!("rename it, e.g. `{fixed}`")));
    }
    Ok(())
}

/// True for names CEL reads as one identifier: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Fails with a readable message if the graph has a cycle.
pub fn check_acyclic(wf: &Workflow) -> Result<(), WdlError> {
    let Err(cycle) = faasflow_core::graph::topo_order(&wf.graph) else {
        return Ok(());
    };
    let name = |n: NodeId| wf.graph[n].name.as_str();
    let mut names: Vec<&str> = cycle.iter().map(|&n| name(n)).collect();
    if let Some(first) = names.first().copied() {
        names.push(first);
    }
    let circle = names.join(" → ");
    // A data edge in a loop of otherwise ordered steps: a step reads one that runs after it.
    let steps = cycle.len();
    for i in 0..steps {
        let (s, t) = (cycle[i], cycle[(i + 1) % steps]);
        let reads = wf
            .graph
            .edges_connecting(s, t)
            .find(|e| !e.weight().control && !e.weight().data.is_empty());
        if let Some(e) = reads {
            let output = &e.weight().data[0].0;
            return Err(WdlError::new(
                ErrorKind::Cycle,
                wf.graph[t].pos,
                format!(
                    "`{}` reads `{}.{output}`, but `{}` runs after `{}` ({circle})",
                    name(t),
                    name(s),
                    name(s),
                    name(t)
                ),
            )
            .expected("each step reads only outputs of steps that run before it")
            .hint(format!(
                "move `{}` before `{}`, or read an output of a step that runs earlier",
                name(s),
                name(t)
            )));
        }
    }
    let pos = cycle.first().map_or(Pos::UNKNOWN, |&n| wf.graph[n].pos);
    Err(
        WdlError::new(ErrorKind::Cycle, pos, format!("the steps lead in a circle: {circle}"))
            .expected("a graph without cycles")
            .hint("remove the `next` entry (or the reference) that leads back to an earlier step"),
    )
}

struct Compiler<'d> {
    doc: &'d Document,
    wf: Workflow,
    functions: BTreeMap<&'d str, &'d FunctionDecl>,
    /// Node names, for duplicates and lookups (never iterated).
    names: HashMap<String, NodeId>,
    pending: Vec<Pending>,
    /// Enclosing foreach steps: (element name, foreach node), innermost last.
    elements: Vec<(String, NodeId)>,
    /// Enclosing switch cases: (switch node, case), outermost first.
    cases: Vec<(NodeId, u32)>,
    /// The enclosing switch cases of every node, by node index.
    case_path: Vec<Vec<(NodeId, u32)>>,
    /// The catch step of each task that has one.
    catches: HashMap<NodeId, NodeId>,
}

impl Compiler<'_> {
    fn steps(&mut self, steps: &[Step], mut preds: Vec<Pred>) -> Result<Vec<Pred>, WdlError> {
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

    /// `src` and, when it is an output of a caught task, the same output of its catch step
    /// (the first that ran), with the data edges from the catch step to `consumer` (`None`:
    /// the workflow's result). `r` is the reference, for errors.
    fn with_catch(
        &mut self,
        src: DataSource,
        r: &Ref,
        consumer: Option<NodeId>,
        input: &str,
        size: u64,
    ) -> Result<Vec<DataSource>, WdlError> {
        let DataSource::Output { node, output } = &src else {
            return Ok(vec![src]);
        };
        let Some(&catch) = self.catches.get(node) else {
            return Ok(vec![src]);
        };
        if consumer == Some(catch) {
            return Err(WdlError::new(
                ErrorKind::DanglingReference,
                r.pos,
                format!(
                    "catch step `{}` reads `{r}`, but it runs only when `{}` failed, so that output never exists",
                    self.wf.graph[catch].name, self.wf.graph[*node].name
                ),
            )
            .expected(format!(
                "the failure, as the input `{CATCH_INPUT}`, or outputs of earlier steps"
            )));
        }
        let catch_task = self.wf.graph[catch].task().expect("a catch step is a task");
        if catch_task.spec.output(output).is_none() {
            return Err(WdlError::new(
                ErrorKind::DanglingReference,
                r.pos,
                format!(
                    "`{r}` is read here, but catch step `{}` (function `{}`), which stands in for `{}` when it fails, has no output `{output}`",
                    self.wf.graph[catch].name,
                    catch_task.function,
                    self.wf.graph[*node].name
                ),
            )
            .expected(format!("every output of `{}` that later steps read, declared on the catch step's function too", self.wf.graph[*node].name))
            .hint(format!("declare `{output}` under `functions: {}: outputs:`", catch_task.function)));
        }
        let alt = DataSource::Output {
            node: catch,
            output: output.clone(),
        };
        if let Some(c) = consumer {
            add_data(&mut self.wf, catch, c, output, input, size);
        }
        Ok(vec![src, alt])
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

    /// The task names, sorted (for messages).
    fn task_names(&self) -> Vec<&str> {
        let mut tasks: Vec<&str> = self
            .wf
            .graph
            .node_weights()
            .filter(|n| !n.is_virtual())
            .map(|n| n.name.as_str())
            .collect();
        tasks.sort_unstable();
        tasks
    }

    fn task_named(&self, name: &(String, Pos)) -> Result<NodeId, WdlError> {
        match self.names.get(&name.0) {
            Some(&n) if !self.wf.graph[n].is_virtual() => Ok(n),
            _ => {
                let tasks = self.task_names();
                let mut err = WdlError::new(
                    ErrorKind::DanglingReference,
                    name.1,
                    format!("there is no task named `{}`", name.0),
                )
                .expected(format!(
                    "contention pairs name tasks: {}",
                    list_names(tasks.iter().copied(), 12)
                ));
                if let Some(s) = did_you_mean(&name.0, tasks.iter().copied()) {
                    err = err.hint(format!("did you mean `{s}`?"));
                }
                Err(err)
            }
        }
    }

    fn no_such_step(&self, head: &str, pos: Pos) -> WdlError {
        let tasks = self.task_names();
        let mut err = WdlError::new(
            ErrorKind::DanglingReference,
            pos,
            format!("there is no step named `{head}`"),
        )
        .expected(format!(
            "`input.<name>` or `<step>.<output>` with one of the steps: {}",
            list_names(tasks.iter().copied(), 12)
        ));
        if let Some(s) = did_you_mean(head, tasks.iter().copied().chain(["input"])) {
            err = err.hint(format!("did you mean `{s}`?"));
        }
        err
    }

    /// Resolves `r` read by `consumer` (None for the workflow output).
    fn source(
        &mut self,
        r: &Ref,
        consumer: Option<NodeId>,
        elements: &[(String, NodeId)],
    ) -> Result<(DataSource, ValueKind, u64), WdlError> {
        if r.head == "input" {
            return self.workflow_input(r, None);
        }
        if let Some((_, fe)) = elements.iter().rev().find(|(e, _)| *e == r.head) {
            // The elements together carry the whole list.
            let over_size = match &self.wf.graph[*fe].kind {
                NodeKind::Foreach(f) => self.size_of(&f.over),
                _ => 0,
            };
            return match r.field.as_str() {
                "item" => Ok((DataSource::Item(*fe), ValueKind::Json, over_size)),
                "index" => Ok((DataSource::Index(*fe), ValueKind::Json, 8)),
                other => Err(WdlError::new(
                    ErrorKind::DanglingReference,
                    r.pos,
                    format!("a foreach element has no `{other}`"),
                )
                .expected(format!(
                    "`{}.item` (the element) or `{}.index` (its position)",
                    r.head, r.head
                ))),
            };
        }
        let Some(&producer) = self.names.get(&r.head) else {
            if let (true, Some((named, _))) = (r.head == DEFAULT_ELEMENT, elements.last()) {
                return Err(WdlError::new(
                    ErrorKind::DanglingReference,
                    r.pos,
                    format!(
                        "this foreach is named `{named}`, so its element is `{named}.{}`",
                        r.field
                    ),
                )
                .expected(format!("`{named}.item` or `{named}.index`"))
                .hint("`each` is the element of a foreach that has no name"));
            }
            if r.head == DEFAULT_ELEMENT || matches!(r.field.as_str(), "item" | "index") {
                return Err(WdlError::new(
                    ErrorKind::DanglingReference,
                    r.pos,
                    format!("`{r}` is used outside of its foreach"),
                )
                .expected("a foreach element is read only inside the foreach's `do` steps")
                .hint(
                    "read the foreach's results after it through the body's outputs (`<step>.<output>` gives the list)",
                ));
            }
            return Err(self.no_such_step(&r.head, r.pos));
        };
        let node = &self.wf.graph[producer];
        let Some(task) = node.task() else {
            if let NodeKind::Foreach(_) = node.kind {
                return Err(WdlError::new(
                    ErrorKind::DanglingReference,
                    r.pos,
                    format!("`{r}` is used outside of foreach `{}`", r.head),
                )
                .expected("a foreach element is read only inside the foreach's `do` steps"));
            }
            return Err(WdlError::new(
                ErrorKind::DanglingReference,
                r.pos,
                format!("`{}` is a {} step and has no outputs", r.head, node.kind.as_str()),
            )
            .expected("`<task>.<output>`: only tasks produce outputs"));
        };
        let Some(out) = task.spec.output(&r.field) else {
            let names: Vec<&str> = task.spec.outputs.iter().map(|o| o.name.as_str()).collect();
            let mut err = WdlError::new(
                ErrorKind::DanglingReference,
                r.pos,
                format!(
                    "task `{}` (function `{}`) has no output `{}`",
                    r.head, task.function, r.field
                ),
            )
            .expected(format!(
                "one of its declared outputs: {}",
                list_names(names.iter().copied(), 12)
            ));
            err = match did_you_mean(&r.field, names.iter().copied()) {
                Some(s) => err.hint(format!("did you mean `{}.{s}`?", r.head)),
                None => err.hint(format!("declare it under `functions: {}: outputs:`", task.function)),
            };
            return Err(err);
        };
        if let Some(c) = consumer
            && let Some((sw, _)) = self.other_case(producer, c)
        {
            let (pn, cn, swn) = (
                &self.wf.graph[producer].name,
                &self.wf.graph[c].name,
                &self.wf.graph[sw].name,
            );
            return Err(WdlError::new(
                ErrorKind::DanglingReference,
                r.pos,
                format!("`{cn}` reads `{r}`, but `{pn}` is in another case of switch `{swn}`, so it never runs when `{cn}` does"),
            )
            .expected("an output of a step that runs before this one on the same path")
            .hint("read it after the switch (a list of references takes whichever case ran), or from a step before the switch"));
        }
        if consumer == Some(producer) {
            return Err(WdlError::new(
                ErrorKind::Cycle,
                r.pos,
                format!("task `{}` reads its own output `{r}`", r.head),
            )
            .expected("an output of a step that runs before this one"));
        }
        let (kind, mut size) = (out.kind, out.size);
        // Read from outside a foreach body, a body output is the list of all elements' outputs.
        let mut scope = node.scope;
        let consumer_scopes = consumer.map(|c| self.scopes_of(c)).unwrap_or_default();
        let mut list = false;
        while let Some(fe) = scope {
            if consumer_scopes.contains(&fe) {
                break;
            }
            if let NodeKind::Foreach(f) = &self.wf.graph[fe].kind {
                size = size.saturating_mul(u64::from(f.width.max(1)));
            }
            list = true;
            scope = self.wf.graph[fe].scope;
        }
        let kind = if list { ValueKind::List } else { kind };
        Ok((
            DataSource::Output {
                node: producer,
                output: r.field.clone(),
            },
            kind,
            size,
        ))
    }

    /// The switch (and the producer's case) when `producer` and `consumer` sit in different
    /// cases of one switch.
    fn other_case(&self, producer: NodeId, consumer: NodeId) -> Option<(NodeId, u32)> {
        let (p, c) = (&self.case_path[producer.index()], &self.case_path[consumer.index()]);
        p.iter()
            .zip(c)
            .find(|(a, b)| a != b)
            .filter(|(a, b)| a.0 == b.0)
            .map(|(a, _)| *a)
    }

    fn scopes_of(&self, mut n: NodeId) -> Vec<NodeId> {
        let mut out = Vec::new();
        while let Some(s) = self.wf.graph[n].scope {
            out.push(s);
            n = s;
        }
        out
    }

    fn workflow_input(&mut self, r: &Ref, want: Option<ValueKind>) -> Result<(DataSource, ValueKind, u64), WdlError> {
        let declared_by_use = self.doc.inputs.is_none();
        if let Some(i) = self.wf.inputs.iter_mut().find(|i| i.name == r.field) {
            // An input declared by use becomes a list when a foreach iterates over it.
            if declared_by_use && want == Some(ValueKind::List) {
                i.kind = ValueKind::List;
            }
            return Ok((DataSource::Input(r.field.clone()), i.kind, i.size));
        }
        if self.doc.inputs.is_some() {
            let names: Vec<&str> = self.wf.inputs.iter().map(|i| i.name.as_str()).collect();
            let mut err = WdlError::new(
                ErrorKind::DanglingReference,
                r.pos,
                format!("the workflow has no input `{}`", r.field),
            )
            .expected(format!(
                "one of the inputs declared under `inputs:`: {}",
                list_names(names.iter().copied(), 12)
            ));
            if let Some(s) = did_you_mean(&r.field, names.iter().copied()) {
                err = err.hint(format!("did you mean `input.{s}`?"));
            }
            return Err(err);
        }
        // No `inputs:` section: inputs are declared by use.
        let kind = want.unwrap_or(ValueKind::Json);
        self.wf.inputs.push(WorkflowInput {
            name: r.field.clone(),
            kind,
            size: 0,
        });
        Ok((DataSource::Input(r.field.clone()), kind, 0))
    }

    fn size_of(&self, s: &DataSource) -> u64 {
        match s {
            DataSource::Input(name) => self.wf.inputs.iter().find(|i| i.name == *name).map_or(0, |i| i.size),
            DataSource::Output { node, output } => self.wf.graph[*node]
                .task()
                .and_then(|t| t.spec.output(output))
                .map_or(0, |o| o.size),
            DataSource::Item(_) | DataSource::Index(_) => 8,
        }
    }

    fn resolve(&mut self, p: Pending) -> Result<(), WdlError> {
        match p {
            Pending::Input {
                node,
                input,
                refs,
                elements,
            } => {
                let input_name = match &self.wf.graph[node].kind {
                    NodeKind::Task(t) => t.inputs[input].name.clone(),
                    _ => unreachable!("inputs belong to tasks"),
                };
                let mut sources = Vec::new();
                for r in &refs {
                    let (src, _, size) = self.source(r, Some(node), &elements)?;
                    if let Some(from) = source_node(&src) {
                        add_data(&mut self.wf, from, node, data_name(&src), &input_name, size);
                    }
                    sources.extend(self.with_catch(src, r, Some(node), &input_name, size)?);
                }
                if let NodeKind::Task(t) = &mut self.wf.graph[node].kind {
                    t.inputs[input].sources = sources;
                }
            }
            Pending::Condition { node, cond, elements } => {
                for (r, bare) in condition_refs(&cond)? {
                    if bare {
                        if r.head == "input"
                            || self.names.contains_key(&r.head)
                            || elements.iter().any(|(e, _)| *e == r.head)
                        {
                            return Err(WdlError::new(
                                ErrorKind::Condition,
                                cond.pos,
                                format!("the condition uses `{}` without saying which of its values", r.head),
                            )
                            .expected(format!("`{}.<name>`", r.head)));
                        }
                        return Err(self.no_such_step(&r.head, cond.pos));
                    }
                    let r = Ref { pos: cond.pos, ..r };
                    let (src, kind, size) = self.source(&r, Some(node), &elements)?;
                    if kind == ValueKind::Bytes {
                        return Err(WdlError::new(
                            ErrorKind::Condition,
                            cond.pos,
                            format!("the condition reads `{r}`, which is declared as bytes"),
                        )
                        .expected("conditions read json (or list) values")
                        .hint(
                            "declare the output with `type: json` if it holds a JSON value like true, 3 or \"x\""
                                .to_string(),
                        ));
                    }
                    if let Some(from) = source_node(&src) {
                        let key = r.to_string();
                        add_data(&mut self.wf, from, node, data_name(&src), &key, size);
                        // A caught task's values come from its catch step (under its name).
                        self.with_catch(src, &r, Some(node), &key, size)?;
                    }
                }
            }
            Pending::Over { node, over, elements } => {
                let (src, kind, size) = if over.head == "input" {
                    self.workflow_input(&over, Some(ValueKind::List))?
                } else {
                    self.source(&over, Some(node), &elements)?
                };
                let element = matches!(src, DataSource::Item(_));
                if kind != ValueKind::List && !element {
                    return Err(WdlError::new(
                        ErrorKind::ForeachOverNonList,
                        over.pos,
                        format!("foreach iterates over `{over}`, which is {}", describe_kind(kind)),
                    )
                    .expected("a list: an output or input declared with `type: list`")
                    .hint("declare it as `{type: list}` if the function returns a JSON list"));
                }
                if let Some(from) = source_node(&src) {
                    add_data(&mut self.wf, from, node, data_name(&src), "over", size);
                }
                self.with_catch(src.clone(), &over, Some(node), "over", size)?;
                if let NodeKind::Foreach(f) = &mut self.wf.graph[node].kind {
                    f.over = src;
                }
            }
            Pending::Output { index, refs } => {
                let mut sources = Vec::new();
                for r in &refs {
                    let (src, _, size) = self.source(r, None, &[])?;
                    sources.extend(self.with_catch(src, r, None, "", size)?);
                }
                self.wf.outputs[index].sources = sources;
            }
        }
        Ok(())
    }
}

fn describe_kind(k: ValueKind) -> &'static str {
    match k {
        ValueKind::Bytes => "bytes",
        ValueKind::Json => "a json value, not a list",
        ValueKind::List => "a list",
    }
}

/// The node that carries a value to its readers.
pub(crate) fn source_node(s: &DataSource) -> Option<NodeId> {
    match s {
        DataSource::Input(_) => None,
        DataSource::Output { node, .. } | DataSource::Item(node) | DataSource::Index(node) => Some(*node),
    }
}

fn data_name(s: &DataSource) -> &str {
    match s {
        DataSource::Output { output, .. } => output,
        DataSource::Item(_) => "item",
        DataSource::Index(_) => "index",
        DataSource::Input(name) => name,
    }
}

/// Adds (or marks) a control edge `from → to` for `case`.
pub(crate) fn connect_control(wf: &mut Workflow, from: NodeId, to: NodeId, case: Option<u32>) {
    let existing = wf
        .graph
        .edges_connecting(from, to)
        .find(|e| e.weight().case == case && !e.weight().on_failure)
        .map(|e| e.id());
    match existing {
        Some(e) => wf.graph[e].control = true,
        None => {
            wf.graph.add_edge(
                from,
                to,
                Edge {
                    control: true,
                    case,
                    ..Edge::default()
                },
            );
        }
    }
}

/// Adds data `output → input` of `bytes` to the edge `from → to` (creating it if needed).
pub(crate) fn add_data(wf: &mut Workflow, from: NodeId, to: NodeId, output: &str, input: &str, bytes: u64) {
    let existing = wf
        .graph
        .edges_connecting(from, to)
        .find(|e| e.weight().case.is_none() && !e.weight().on_failure)
        .map(|e| e.id());
    let e = match existing {
        Some(e) => e,
        None => wf.graph.add_edge(from, to, Edge::default()),
    };
    let edge = &mut wf.graph[e];
    let pair = (output.to_owned(), input.to_owned());
    if !edge.data.contains(&pair) {
        // The same output read twice by one task crosses once.
        if !edge.data.iter().any(|(o, _)| o == output) {
            edge.bytes = edge.bytes.saturating_add(bytes);
        }
        edge.data.push(pair);
    }
}

/// Checks that a condition is valid CEL.
pub(crate) fn check_cel_syntax(cond: &Condition) -> Result<cel::Program, WdlError> {
    let program = cel::Program::compile(&cond.text).map_err(|e| {
        let detail = e.errors.first().map_or_else(|| e.to_string(), |x| x.msg.clone());
        // The parser lists every token it would have accepted; the first words say enough.
        let detail = detail.split(" expecting").next().unwrap_or(&detail).to_owned();
        WdlError::new(
            ErrorKind::Condition,
            cond.pos,
            format!("`{}` is not a valid CEL condition: {detail}", cond.text),
        )
        .expected("a CEL expression such as `upload.flag == true && input.size > 10`")
        .hint("CEL uses && || ! (not and/or/not), == for equality, and double or single quotes for strings")
    })?;
    use cel::common::ast::{Expr, LiteralValue};
    if let Expr::Literal(lit) = &program.expression().expr
        && !matches!(lit, LiteralValue::Boolean(_))
    {
        return Err(WdlError::new(
            ErrorKind::Condition,
            cond.pos,
            format!("the condition `{}` is a constant, not true or false", cond.text),
        )
        .expected("a comparison or a test that is true or false, like `step.count > 3`"));
    }
    let mut unknown = None;
    find_unknown_function(program.expression(), &mut unknown);
    if let Some(f) = unknown {
        return Err(WdlError::new(
            ErrorKind::Condition,
            cond.pos,
            format!("the condition `{}` calls `{f}`, which CEL does not have", cond.text),
        )
        .expected(format!("CEL's functions: {}", CEL_FUNCTIONS.join(", "))));
    }
    Ok(program)
}

/// The functions a condition may call (CEL's standard functions that the evaluator has).
const CEL_FUNCTIONS: &[&str] = &[
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "int",
    "uint",
    "double",
    "string",
    "bool",
    "bytes",
    "type",
    "dyn",
    "duration",
    "timestamp",
    "max",
    "min",
];

fn find_unknown_function(e: &cel::common::ast::IdedExpr, out: &mut Option<String>) {
    use cel::common::ast::Expr;
    if out.is_some() {
        return;
    }
    match &e.expr {
        Expr::Call(c) => {
            let operator = c.func_name.starts_with(['_', '@', '!', '-']);
            if !operator && !CEL_FUNCTIONS.contains(&c.func_name.as_str()) {
                *out = Some(c.func_name.clone());
                return;
            }
            if let Some(t) = &c.target {
                find_unknown_function(t, out);
            }
            c.args.iter().for_each(|a| find_unknown_function(a, out));
        }
        Expr::Select(s) => find_unknown_function(&s.operand, out),
        Expr::List(l) => l.elements.iter().for_each(|x| find_unknown_function(x, out)),
        Expr::Map(m) => {
            for entry in &m.entries {
                if let cel::common::ast::EntryExpr::MapEntry(me) = &entry.expr {
                    find_unknown_function(&me.key, out);
                    find_unknown_function(&me.value, out);
                }
            }
        }
        Expr::Comprehension(c) => {
            for x in [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                find_unknown_function(x, out);
            }
        }
        _ => {}
    }
}

/// The references a condition reads: (`head.field`, false) for selections, (`head`, true) for
/// bare identifiers.
pub(crate) fn condition_refs(cond: &Condition) -> Result<Vec<(Ref, bool)>, WdlError> {
    let program = check_cel_syntax(cond)?;
    let mut out = Vec::new();
    walk(program.expression(), &mut Vec::new(), &mut out, cond.pos);
    out.dedup();
    Ok(out)
}

fn walk(e: &cel::common::ast::IdedExpr, bound: &mut Vec<String>, out: &mut Vec<(Ref, bool)>, pos: Pos) {
    use cel::common::ast::Expr;
    match &e.expr {
        Expr::Select(s) => {
            if let Expr::Ident(head) = &s.operand.expr {
                if !bound.contains(head) {
                    out.push((
                        Ref {
                            head: head.clone(),
                            field: s.field.clone(),
                            pos,
                        },
                        false,
                    ));
                }
            } else {
                walk(&s.operand, bound, out, pos);
            }
        }
        Expr::Ident(name) if !bound.contains(name) => {
            out.push((
                Ref {
                    head: name.clone(),
                    field: String::new(),
                    pos,
                },
                true,
            ));
        }
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                walk(t, bound, out, pos);
            }
            for a in &c.args {
                walk(a, bound, out, pos);
            }
        }
        Expr::List(l) => l.elements.iter().for_each(|x| walk(x, bound, out, pos)),
        Expr::Map(m) => {
            for entry in &m.entries {
                if let cel::common::ast::EntryExpr::MapEntry(me) = &entry.expr {
                    walk(&me.key, bound, out, pos);
                    walk(&me.value, bound, out, pos);
                }
            }
        }
        Expr::Comprehension(c) => {
            walk(&c.iter_range, bound, out, pos);
            walk(&c.accu_init, bound, out, pos);
            let n = bound.len();
            bound.push(c.iter_var.clone());
            bound.push(c.accu_var.clone());
            walk(&c.loop_cond, bound, out, pos);
            walk(&c.loop_step, bound, out, pos);
            walk(&c.result, bound, out, pos);
            bound.truncate(n);
        }
        _ => {}
    }
}
