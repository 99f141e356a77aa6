//! Import of FaaSFlow v1.1's hierarchical form (`workflow.yaml`).
//!
//! Steps are `type: function | pass | parallel | switch | foreach`. Inputs are wired with
//! `inputMappings` whose sources are `INPUT.x` (a workflow input) or `LOCAL.x` (the latest
//! output named `x` produced before this step, else the workflow input `x`); a foreach maps
//! `LOCAL.list[*]` onto its task and gathers `LOCAL[*].out` into a list. The result is a
//! native WDL [`Document`], compiled like any other.

use std::collections::BTreeMap;

use crate::compile::{DEFAULT_ELEMENT, compile};
use crate::error::{ErrorKind, Pos, WdlError};
use crate::import::cond::{self, Token};
use crate::import::{FAASFLOW_MEMORY_MIB, Imported, check_default_name};
use crate::wdl::{Condition, Document, FunctionDecl, Ref, Spanned, Step, TaskStep, default_spec};
use crate::yaml::{Fields, Yaml};
use faasflow_core::dag::{OutputDecl, SourceFormat, ValueKind};

/// Imports a hierarchical FaaSFlow workflow; `name` is the workflow's name.
pub fn import(root: &Yaml, name: &str) -> Result<Imported, WdlError> {
    check_default_name(name)?;
    let mut conv = Converter {
        functions: BTreeMap::new(),
        tasks: BTreeMap::new(),
        visible: Vec::new(),
        all: Vec::new(),
        foreach_count: 0,
        warnings: Vec::new(),
        warned: Vec::new(),
    };
    let mut top = Fields::new(root, "the FaaSFlow workflow")?;
    let out_maps = top.get("outputMappings");
    let step = conv.step(root, &mut top)?;
    top.finish(STEP_KEYS)?;
    let mut output = Vec::new();
    match out_maps {
        Some(om) => {
            for m in om.seq("a list of {target, source}")? {
                let (target, source) = mapping(m)?;
                let refs = conv.resolve_local(&source.0, source.1, false)?;
                output.push((target, refs));
            }
        }
        None => {
            // FaaSFlow returns every output when the workflow maps none.
            for (out, refs) in conv.all.clone() {
                output.push(((out, root.pos), refs));
            }
        }
    }
    let warnings = std::mem::take(&mut conv.warnings);
    let functions = conv
        .functions
        .into_iter()
        .map(|(fname, (pos, outputs))| {
            let mut spec = default_spec();
            spec.memory_mib = FAASFLOW_MEMORY_MIB;
            spec.memory_use_mib = FAASFLOW_MEMORY_MIB as f64 / 4.0;
            spec.outputs = outputs;
            FunctionDecl {
                name: (fname, pos),
                spec,
            }
        })
        .collect();
    let doc = Document {
        name: (name.to_owned(), root.pos),
        inputs: None,
        functions,
        steps: vec![step],
        output,
        contention: Vec::new(),
        deadline_ms: None,
    };
    let workflow = compile(&doc, SourceFormat::FaasflowHierarchical)?;
    Ok(Imported { workflow, warnings })
}

const STEP_KEYS: &[&str] = &[
    "name",
    "type",
    "source",
    "output",
    "inputMappings",
    "steps",
    "branches",
    "choices",
    "task",
    "outputMappings",
];

struct Converter {
    /// Functions by source: where first seen, outputs.
    functions: BTreeMap<String, (Pos, Vec<OutputDecl>)>,
    /// Task name → function source.
    tasks: BTreeMap<String, String>,
    /// Outputs visible at this point: name → references (alternatives), latest last.
    visible: Vec<(String, Vec<Ref>)>,
    /// Every output produced, in order (for a workflow without outputMappings).
    all: Vec<(String, Vec<Ref>)>,
    foreach_count: u32,
    /// `LOCAL.x` read as workflow inputs, reported once each.
    warnings: Vec<WdlError>,
    warned: Vec<String>,
}

fn mapping(m: &Yaml) -> Result<(Spanned, Spanned), WdlError> {
    let mut f = Fields::new(m, "a mapping {target, source}")?;
    let target = f.req("target", "the name it is given")?.name("a name")?;
    let source = f.req("source", "INPUT.x or LOCAL.x")?.name("INPUT.x or LOCAL.x")?;
    f.finish(&["target", "source"])?;
    Ok((target, source))
}

impl Converter {
    fn bind(&mut self, name: &str, refs: Vec<Ref>) {
        self.visible.retain(|(n, _)| n != name);
        self.visible.push((name.to_owned(), refs.clone()));
        self.all.retain(|(n, _)| n != name);
        self.all.push((name.to_owned(), refs));
    }

    /// `INPUT.x`, `LOCAL.x` (or with `[*]` when `list` is allowed).
    fn resolve_local(&mut self, text: &str, pos: Pos, list: bool) -> Result<Vec<Ref>, WdlError> {
        let bad = || {
            WdlError::new(
                ErrorKind::Type,
                pos,
                format!("`{text}` is not a FaaSFlow mapping source"),
            )
            .expected("INPUT.<name> or LOCAL.<name>")
        };
        let (scope, field) = text.trim().split_once('.').ok_or_else(bad)?;
        let field = match field.strip_suffix("[*]") {
            Some(f) if list => f,
            Some(_) => {
                return Err(WdlError::new(
                    ErrorKind::Unsupported,
                    pos,
                    format!("`{text}` iterates a list outside of a foreach"),
                )
                .expected("`[*]` only in a foreach's inputMappings"));
            }
            None => field,
        };
        match scope {
            "INPUT" => Ok(vec![Ref {
                head: "input".into(),
                field: field.into(),
                pos,
            }]),
            "LOCAL" => match self.visible.iter().rev().find(|(n, _)| n == field) {
                Some((_, refs)) => Ok(refs.iter().map(|r| Ref { pos, ..r.clone() }).collect()),
                None => {
                    // FaaSFlow reads the workflow input of that name; a typo would pass unseen.
                    if !self.warned.contains(&field.to_owned()) {
                        self.warned.push(field.to_owned());
                        self.warnings.push(WdlError::new(
                            ErrorKind::DanglingReference,
                            pos,
                            format!("`LOCAL.{field}` names no output produced before this step; it is read as the workflow input `{field}`"),
                        ));
                    }
                    Ok(vec![Ref {
                        head: "input".into(),
                        field: field.into(),
                        pos,
                    }])
                }
            },
            _ => Err(bad()),
        }
    }

    fn declare(&mut self, source: &str, pos: Pos, output: &str, kind: ValueKind) {
        let entry = self.functions.entry(source.to_owned()).or_insert((pos, Vec::new()));
        match entry.1.iter_mut().find(|o| o.name == output) {
            Some(o) => {
                if kind != ValueKind::Bytes && o.kind != ValueKind::List {
                    o.kind = kind;
                }
            }
            None => entry.1.push(OutputDecl {
                name: output.to_owned(),
                kind,
                size: 0,
            }),
        }
    }

    /// Declares that the output `r` names is read as `kind`.
    fn mark(&mut self, r: &Ref, kind: ValueKind) {
        if let Some(src) = self.tasks.get(&r.head).cloned() {
            self.declare(&src, r.pos, &r.field, kind);
        }
    }

    fn step(&mut self, node: &Yaml, f: &mut Fields<'_>) -> Result<Step, WdlError> {
        let name = f.get("name").map(|n| n.name("a step name")).transpose()?;
        let ty = f
            .req("type", "function, pass, parallel, switch or foreach")?
            .name("a step type")?;
        match ty.0.as_str() {
            "function" => {
                let name = name.ok_or_else(|| {
                    WdlError::new(ErrorKind::MissingKey, node.pos, "this function step has no `name`")
                        .expected("`name:` with the step's name")
                })?;
                let source = match f.get("source") {
                    Some(s) => s.name("the function's source")?,
                    None => name.clone(),
                };
                let mut inputs = Vec::new();
                if let Some(im) = f.get("inputMappings") {
                    for m in im.seq("a list of {target, source}")? {
                        let (target, src) = mapping(m)?;
                        inputs.push((target, self.resolve_local(&src.0, src.1, false)?));
                    }
                }
                self.functions.entry(source.0.clone()).or_insert((source.1, Vec::new()));
                self.tasks.insert(name.0.clone(), source.0.clone());
                if let Some(outs) = f.get("output") {
                    for o in outs.one_or_many() {
                        let (oname, _) = o.name("an output name")?;
                        self.declare(&source.0, source.1, &oname, ValueKind::Bytes);
                        let r = Ref {
                            head: name.0.clone(),
                            field: oname.clone(),
                            pos: o.pos,
                        };
                        self.bind(&oname, vec![r]);
                    }
                }
                Ok(Step::Task(TaskStep {
                    name,
                    function: source,
                    inputs,
                    catch: None,
                }))
            }
            "pass" => {
                let mut steps = Vec::new();
                for s in f.req("steps", "a list of steps")?.seq("a list of steps")? {
                    steps.push(self.child(s)?);
                }
                Ok(Step::Sequence { name, steps })
            }
            "parallel" => {
                let before = self.visible.clone();
                let mut after = before.clone();
                let mut branches = Vec::new();
                for b in f.req("branches", "a list of branches")?.seq("a list of branches")? {
                    self.visible = before.clone();
                    branches.push(vec![self.child(b)?]);
                    for (n, r) in &self.visible {
                        if !before.iter().any(|(bn, br)| bn == n && br == r) {
                            after.retain(|(an, _)| an != n);
                            after.push((n.clone(), r.clone()));
                        }
                    }
                }
                self.visible = after;
                Ok(Step::Parallel {
                    name,
                    pos: node.pos,
                    branches,
                })
            }
            "switch" => {
                let before = self.visible.clone();
                // name → (alternatives, number of branches that produce it)
                let mut produced: Vec<(String, Vec<Ref>, usize)> = Vec::new();
                let mut cases = Vec::new();
                let mut default = None;
                let mut branches = 0;
                for c in f
                    .req("choices", "a list of {condition, go}")?
                    .seq("a list of choices")?
                {
                    let mut cf = Fields::new(c, "a switch choice")?;
                    let cond = cf.req("condition", "a condition, or default")?;
                    let text = cond.str("a condition")?.to_owned();
                    let go = cf.req("go", "the step to run")?;
                    cf.finish(&["condition", "go"])?;
                    self.visible = before.clone();
                    let translated = if text.trim() == "default" {
                        None
                    } else {
                        Some(self.translate(&text, cond.pos)?)
                    };
                    let branch = vec![self.child(go)?];
                    branches += 1;
                    for (n, r) in &self.visible {
                        if !before.iter().any(|(bn, br)| bn == n && br == r) {
                            match produced.iter_mut().find(|(pn, _, _)| pn == n) {
                                Some((_, refs, count)) => {
                                    refs.extend(r.iter().cloned());
                                    *count += 1;
                                }
                                None => produced.push((n.clone(), r.clone(), 1)),
                            }
                        }
                    }
                    match translated {
                        Some(t) => cases.push((t, branch)),
                        None => default = Some(branch),
                    }
                }
                self.visible = before.clone();
                for (n, mut r, count) in produced {
                    // When some branch does not produce it, the value from before still counts.
                    if count < branches
                        && let Some((_, earlier)) = before.iter().rev().find(|(bn, _)| *bn == n)
                    {
                        r.extend(earlier.iter().cloned());
                    }
                    self.bind(&n, r);
                }
                let Some(default) = default else {
                    return Err(WdlError::new(
                        ErrorKind::SwitchWithoutDefault,
                        node.pos,
                        "this switch has no `default` choice",
                    )
                    .expected("a choice with `condition: default`"));
                };
                Ok(Step::Switch {
                    name,
                    pos: node.pos,
                    cases,
                    default,
                })
            }
            "foreach" => {
                self.foreach_count += 1;
                let element = name
                    .clone()
                    .map_or_else(|| format!("{DEFAULT_ELEMENT}{}", self.foreach_count), |n| n.0);
                let mut over = None;
                let mut extra = Vec::new();
                if let Some(im) = f.get("inputMappings") {
                    for m in im.seq("a list of {target, source}")? {
                        let (target, src) = mapping(m)?;
                        if src.0.trim().ends_with("[*]") {
                            if over.is_some() {
                                return Err(WdlError::new(
                                    ErrorKind::Unsupported,
                                    src.1,
                                    "this foreach iterates over two lists",
                                )
                                .expected("one `[*]` mapping per foreach"));
                            }
                            let refs = self.resolve_local(&src.0, src.1, true)?;
                            over = Some((
                                target,
                                refs.into_iter()
                                    .next_back()
                                    .ok_or_else(|| WdlError::new(ErrorKind::Type, src.1, "nothing to iterate"))?,
                            ));
                        } else {
                            extra.push((target, self.resolve_local(&src.0, src.1, false)?));
                        }
                    }
                }
                let Some((item_target, over)) = over else {
                    return Err(WdlError::new(
                        ErrorKind::ForeachOverNonList,
                        node.pos,
                        "this foreach names no list to iterate over",
                    )
                    .expected("an inputMapping whose source ends in `[*]`, like LOCAL.keys[*]"));
                };
                self.mark(&over, ValueKind::List);
                let task_node = f.req("task", "the step to run per element")?;
                let mut body = self.child(task_node)?;
                let elem_ref = Ref {
                    head: element.clone(),
                    field: "item".into(),
                    pos: item_target.1,
                };
                let Step::Task(t) = &mut body else {
                    return Err(WdlError::new(
                        ErrorKind::Unsupported,
                        task_node.pos,
                        "this foreach's `task` is not a function step",
                    )
                    .expected("`task:` with `type: function`, which receives the element (as FaaSFlow runs it)")
                    .hint("write foreach steps with several steps in faasflow's WDL (docs/wdl.md)"));
                };
                t.inputs.insert(0, (item_target, vec![elem_ref]));
                for (i, e) in extra.into_iter().enumerate() {
                    t.inputs.insert(i + 1, e);
                }
                if let Some(om) = f.get("outputMappings") {
                    for m in om.seq("a list of {target, source}")? {
                        let (target, src) = mapping(m)?;
                        let field = src.0.trim().strip_prefix("LOCAL[*].").ok_or_else(|| {
                            WdlError::new(
                                ErrorKind::Unsupported,
                                src.1,
                                format!("`{}` is not a foreach output mapping", src.0),
                            )
                            .expected("LOCAL[*].<output>")
                        })?;
                        let refs = self.resolve_local(&format!("LOCAL.{field}"), src.1, false)?;
                        self.bind(&target.0, refs);
                    }
                }
                let fname = name.map(|n| (element.clone(), n.1));
                Ok(Step::Foreach {
                    name: fname.or(Some((element, node.pos))),
                    pos: node.pos,
                    over,
                    max_concurrency: 0,
                    width: 3,
                    body: vec![body],
                })
            }
            other => Err(
                WdlError::new(ErrorKind::Type, ty.1, format!("unknown step type `{other}`"))
                    .expected("function, pass, parallel, switch or foreach"),
            ),
        }
    }

    fn child(&mut self, node: &Yaml) -> Result<Step, WdlError> {
        let mut f = Fields::new(node, "a FaaSFlow step")?;
        let s = self.step(node, &mut f)?;
        f.finish(STEP_KEYS)?;
        Ok(s)
    }

    fn translate(&mut self, text: &str, pos: Pos) -> Result<Condition, WdlError> {
        let mut out = Vec::new();
        let tokens = cond::tokenize(text, pos)?;
        let alone = tokens.len() == 1;
        for t in tokens {
            match t {
                Token::Verbatim(v) => out.push(v),
                Token::Name(n) => {
                    let refs = self.resolve_local(&n, pos, false).map_err(|_| {
                        WdlError::new(
                            ErrorKind::Unsupported,
                            pos,
                            format!("cannot translate `{n}` in the condition `{text}`"),
                        )
                        .expected("INPUT.<name> or LOCAL.<name>")
                    })?;
                    for r in &refs {
                        self.mark(r, ValueKind::Json);
                    }
                    let parts: Vec<String> = refs.iter().map(|r| r.to_string()).collect();
                    if parts.len() > 1 && !alone {
                        return Err(WdlError::new(
                            ErrorKind::Unsupported,
                            pos,
                            format!("`{n}` in `{text}` could come from {}", parts.join(" or ")),
                        )
                        .hint("write the condition in faasflow's WDL and name the producer"));
                    }
                    out.push(if parts.len() > 1 {
                        format!("({})", parts.join(" || "))
                    } else {
                        parts[0].clone()
                    });
                }
            }
        }
        Ok(Condition {
            text: cond::join(&out),
            pos,
        })
    }
}
