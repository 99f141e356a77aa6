//! References become data edges, once every node exists: a reference names a workflow input,
//! a foreach element or a task's output, read from where it runs (a body's output read after
//! its foreach is the list of every element's; an output of a caught task may come from its
//! catch step). Unknown names, outputs and steps in other cases of a switch are refused here.

use super::conditions::condition_refs;
use super::graph::{add_data, data_name, source_node};
use super::{Compiler, DEFAULT_ELEMENT, Pending};
use crate::error::{ErrorKind, Pos, WdlError, did_you_mean, list_names};
use crate::wdl::Ref;
use faasflow_core::dag::{CATCH_INPUT, DataSource, NodeId, NodeKind, ValueKind, WorkflowInput};

impl Compiler<'_> {
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

    pub(super) fn task_named(&self, name: &(String, Pos)) -> Result<NodeId, WdlError> {
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

    pub(super) fn resolve(&mut self, p: Pending) -> Result<(), WdlError> {
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
