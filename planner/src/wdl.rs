//! The native workflow language (WDL): its syntax tree and the decoder from YAML.
//!
//! The language is described in `docs/wdl.md`. This module only checks the *shape* of the
//! file (keys, types, required fields); names and references are checked by the compiler
//! ([`crate::compile`]), which has the whole workflow in view.

use crate::error::{ErrorKind, Pos, WdlError, did_you_mean};
use crate::yaml::{Fields, Value, Yaml, key_text};
use faasflow_core::dag::{
    FailureKind, FailureKinds, FunctionSpec, Isolation, OutputDecl, PythonFunction, Retry, ValueKind,
};

/// A name and where it was written.
pub type Spanned = (String, Pos);

/// A parsed WDL document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The workflow's name.
    pub name: Spanned,
    /// Declared inputs; `None` when the file has no `inputs:` (any `input.x` is then accepted).
    pub inputs: Option<Vec<InputDecl>>,
    /// Declared functions.
    pub functions: Vec<FunctionDecl>,
    /// The top-level sequence.
    pub steps: Vec<Step>,
    /// The workflow's outputs: name and the references it takes (first that ran).
    pub output: Vec<(Spanned, Vec<Ref>)>,
    /// Pairs of tasks the planner never puts into one group.
    pub contention: Vec<(Spanned, Spanned)>,
    /// Time limit of one invocation, ms.
    pub deadline_ms: Option<u64>,
}

/// A declared workflow input.
#[derive(Debug, Clone, PartialEq)]
pub struct InputDecl {
    /// Its name.
    pub name: Spanned,
    /// Its kind.
    pub kind: ValueKind,
    /// Expected size in bytes.
    pub size: u64,
}

/// A declared function.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionDecl {
    /// Its name.
    pub name: Spanned,
    /// Its settings.
    pub spec: FunctionSpec,
}

/// A step of a workflow.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Calls a function.
    Task(TaskStep),
    /// Runs steps one after the other.
    Sequence {
        /// Optional name (unused by the graph; kept for messages).
        name: Option<Spanned>,
        /// The steps.
        steps: Vec<Step>,
    },
    /// Runs branches at the same time.
    Parallel {
        /// Optional name.
        name: Option<Spanned>,
        /// Where it was written.
        pos: Pos,
        /// Each branch is a sequence.
        branches: Vec<Vec<Step>>,
    },
    /// Runs the first case whose condition holds, or the default.
    Switch {
        /// Optional name (names the virtual switch node).
        name: Option<Spanned>,
        /// Where it was written.
        pos: Pos,
        /// Conditions and their branches.
        cases: Vec<(Condition, Vec<Step>)>,
        /// The default branch (may be empty).
        default: Vec<Step>,
    },
    /// Runs its body once per element of a list.
    Foreach {
        /// Optional name: the body reads the element as `<name>.item` (default `each.item`).
        name: Option<Spanned>,
        /// Where it was written.
        pos: Pos,
        /// The list.
        over: Ref,
        /// At most this many elements at once (0 = no limit).
        max_concurrency: u32,
        /// Expected number of elements (planner hint).
        width: u32,
        /// The body.
        body: Vec<Step>,
    },
}

/// A task step.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskStep {
    /// The step's name (unique in the workflow).
    pub name: Spanned,
    /// The function it calls.
    pub function: Spanned,
    /// Its inputs: name and the references it takes (first that ran).
    pub inputs: Vec<(Spanned, Vec<Ref>)>,
    /// The step that runs in its place when it fails for good (`catch`), with the failure
    /// as its input `error`.
    pub catch: Option<Box<TaskStep>>,
}

/// A CEL condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The CEL text.
    pub text: String,
    /// Where it was written.
    pub pos: Pos,
}

/// A reference to a value: `input.x`, `step.output`, `each.item`, `each.index`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ref {
    /// The part before the first dot.
    pub head: String,
    /// The part after it.
    pub field: String,
    /// Where it was written.
    pub pos: Pos,
}

impl std::fmt::Display for Ref {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.head, self.field)
    }
}

/// Default memory of a function, MiB.
pub const DEFAULT_MEMORY_MIB: u64 = 256;
/// Default timeout of one attempt, ms.
pub const DEFAULT_TIMEOUT_MS: u64 = 60_000;

/// A function spec with the defaults of docs/wdl.md.
pub fn default_spec() -> FunctionSpec {
    FunctionSpec {
        pack: None,
        image: None,
        memory_mib: DEFAULT_MEMORY_MIB,
        cpu_millis: 1000,
        timeout_ms: DEFAULT_TIMEOUT_MS,
        retry: Retry::default(),
        isolation: Isolation::Thread,
        network: false,
        idempotent: false,
        python: None,
        scale: 1,
        runtime_ms: 0.0,
        memory_use_mib: DEFAULT_MEMORY_MIB as f64 / 2.0,
        outputs: Vec::new(),
    }
}

const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "inputs",
    "functions",
    "steps",
    "output",
    "contention",
    "deadline",
];
const FUNCTION_KEYS: &[&str] = &[
    "pack",
    "image",
    "memory",
    "cpu",
    "timeout",
    "retry",
    "isolation",
    "network",
    "idempotent",
    "scale",
    "runtime",
    "memory_use",
    "outputs",
    "description",
    "language",
    "handler",
    "code",
    "requirements",
];
const STEP_KINDS: &[&str] = &["task", "sequence", "parallel", "switch", "foreach"];

/// Decodes a native WDL document.
pub fn decode(root: &Yaml) -> Result<Document, WdlError> {
    let mut top = Fields::new(root, "the workflow")?;
    let name = top
        .req("name", "the workflow's name")?
        .name("the workflow's name (a string)")?;
    let _ = top
        .get("description")
        .map(|d| d.str("a description (a string)"))
        .transpose()?;
    let inputs = top.get("inputs").map(decode_inputs).transpose()?;
    let functions = match top.get("functions") {
        Some(f) => decode_functions(f)?,
        None => Vec::new(),
    };
    let steps = decode_steps(top.req("steps", "a list of steps")?)?;
    let output = match top.get("output") {
        Some(o) => decode_bindings(o, "the workflow's `output` (a mapping of names to references)")?,
        None => Vec::new(),
    };
    let mut contention = Vec::new();
    if let Some(c) = top.get("contention") {
        for pair in c.seq("`contention`: a list of pairs of task names")? {
            let items = pair.seq("a pair of task names, like [a, b]")?;
            if items.len() != 2 {
                return Err(WdlError::new(
                    ErrorKind::Type,
                    pair.pos,
                    format!("a contention pair has {} names", items.len()),
                )
                .expected("exactly two task names, like [conversion, sentiment]"));
            }
            contention.push((items[0].name("a task name")?, items[1].name("a task name")?));
        }
    }
    let deadline_ms = match top.get("deadline") {
        Some(d) => Some(positive_ms(d, "`deadline`")?),
        None => None,
    };
    top.finish(TOP_KEYS)?;
    Ok(Document {
        name,
        inputs,
        functions,
        steps,
        output,
        contention,
        deadline_ms,
    })
}

fn decode_inputs(node: &Yaml) -> Result<Vec<InputDecl>, WdlError> {
    let mut out = Vec::new();
    for (k, v) in node.map("`inputs`: a mapping of input names to their type and size")? {
        let name = k.name("an input name")?;
        let (kind, size) = decode_value_decl(v, "an input")?;
        out.push(InputDecl { name, kind, size });
    }
    Ok(out)
}

/// `bytes`, `{type: json, size: 1KB}`, or nothing.
fn decode_value_decl(v: &Yaml, what: &str) -> Result<(ValueKind, u64), WdlError> {
    match &v.value {
        Value::Null => Ok((ValueKind::Bytes, 0)),
        Value::Scalar { .. } => Ok((decode_kind(v)?, 0)),
        _ => {
            let what = format!("{what} declaration");
            let mut f = Fields::new(v, &what)?;
            let kind = f.get("type").map(decode_kind).transpose()?.unwrap_or(ValueKind::Bytes);
            let size = f
                .get("size")
                .map(|s| s.bytes("a size, like 64KB"))
                .transpose()?
                .unwrap_or(0);
            f.finish(&["type", "size"])?;
            Ok((kind, size))
        }
    }
}

fn decode_kind(v: &Yaml) -> Result<ValueKind, WdlError> {
    match v.str("a value type: bytes, json or list")? {
        "bytes" => Ok(ValueKind::Bytes),
        "json" => Ok(ValueKind::Json),
        "list" => Ok(ValueKind::List),
        other => Err(
            WdlError::new(ErrorKind::Type, v.pos, format!("unknown value type `{other}`"))
                .expected("bytes, json or list"),
        ),
    }
}

fn decode_functions(node: &Yaml) -> Result<Vec<FunctionDecl>, WdlError> {
    let mut out = Vec::new();
    for (k, v) in node.map("`functions`: a mapping of function names to their settings")? {
        let name = k.name("a function name")?;
        let what = format!("function `{}`", name.0);
        let spec = if v.is_null() {
            default_spec()
        } else {
            decode_spec(v, &what)?
        };
        out.push(FunctionDecl { name, spec });
    }
    Ok(out)
}

fn decode_spec(node: &Yaml, what: &str) -> Result<FunctionSpec, WdlError> {
    let mut f = Fields::new(node, what)?;
    let mut spec = default_spec();
    if let Some(v) = f.get("pack") {
        spec.pack = Some(v.name("a pack name")?.0);
    }
    if let Some(v) = f.get("image") {
        spec.image = Some(v.name("a container image name")?.0);
    }
    if let Some(v) = f.get("memory") {
        let bytes = v.bytes("a memory size, like 256MiB")?;
        if bytes < 1 << 20 {
            return Err(WdlError::new(ErrorKind::Type, v.pos, "`memory` must be at least 1 MiB")
                .expected("a memory size, like 256MiB"));
        }
        spec.memory_mib = bytes.div_ceil(1 << 20);
    }
    spec.memory_use_mib = spec.memory_mib as f64 / 2.0;
    if let Some(v) = f.get("memory_use") {
        let used = v.bytes("a memory size, like 64MiB")? as f64 / (1u64 << 20) as f64;
        if used > spec.memory_mib as f64 {
            return Err(WdlError::new(
                ErrorKind::Type,
                v.pos,
                format!(
                    "`memory_use` ({used:.0} MiB) is more than `memory` ({} MiB)",
                    spec.memory_mib
                ),
            )
            .expected("the peak memory the function uses, at most the memory it is given")
            .hint("raise `memory`, or lower `memory_use`"));
        }
        spec.memory_use_mib = used;
    }
    if let Some(v) = f.get("cpu") {
        let cores = v.f64("a number of cores, like 0.5")?;
        if !(0.001..=1000.0).contains(&cores) {
            return Err(WdlError::new(
                ErrorKind::Type,
                v.pos,
                format!("`cpu: {cores}` is not a usable number of cores"),
            )
            .expected("a number of cores from 0.001 to 1000, like 0.5"));
        }
        spec.cpu_millis = (cores * 1000.0).round() as u32;
    }
    if let Some(v) = f.get("timeout") {
        spec.timeout_ms = positive_ms(v, "`timeout`")?;
    }
    if let Some(v) = f.get("runtime") {
        spec.runtime_ms = v.duration_ms("an expected runtime, like 120ms")?;
    }
    if let Some(v) = f.get("scale") {
        spec.scale = u32::try_from(v.u64("a number of instances (an integer from 1 to 10000)")?)
            .ok()
            .filter(|s| (1..=10_000).contains(s))
            .ok_or_else(|| WdlError::new(ErrorKind::Type, v.pos, "`scale` must be an integer from 1 to 10000"))?;
    }
    if let Some(v) = f.get("isolation") {
        spec.isolation = match v.str("thread, process or container")? {
            "thread" => Isolation::Thread,
            "process" => Isolation::Process,
            "container" => Isolation::Container,
            other => {
                return Err(
                    WdlError::new(ErrorKind::Type, v.pos, format!("unknown isolation `{other}`"))
                        .expected("thread, process or container"),
                );
            }
        };
    }
    if let Some(v) = f.get("network") {
        spec.network = v.bool("true or false")?;
    }
    if let Some(v) = f.get("idempotent") {
        spec.idempotent = v.bool("true or false")?;
    }
    if let Some(v) = f.get("retry") {
        spec.retry = decode_retry(v)?;
    }
    if let Some(v) = f.get("outputs") {
        spec.outputs = decode_outputs(v)?;
    }
    spec.python = decode_python(&mut f, spec.pack.is_some())?.map(Box::new);
    let _ = f.get("description");
    f.finish(FUNCTION_KEYS)?;
    Ok(spec)
}

/// `language: python` with its `handler`, `code` and `requirements`. `code` is kept as written
/// (empty when not given): [`crate::load`] makes it absolute.
fn decode_python(f: &mut Fields<'_>, has_pack: bool) -> Result<Option<PythonFunction>, WdlError> {
    let language = f.get("language");
    let handler = f.get("handler");
    let code = f.get("code");
    let requirements = f.get("requirements");
    let Some(language) = language else {
        if let Some(v) = handler.or(code).or(requirements) {
            return Err(WdlError::new(
                ErrorKind::Type,
                v.pos,
                "`handler`, `code` and `requirements` are for functions in Python",
            )
            .expected("`language: python` beside them")
            .hint("add `language: python`, or name the function's `pack` if it is in Rust"));
        }
        return Ok(None);
    };
    match language.str("a language: python")? {
        "python" => {}
        other => {
            return Err(
                WdlError::new(ErrorKind::Type, language.pos, format!("unknown language `{other}`"))
                    .expected("python (a function in Rust names its `pack` instead)"),
            );
        }
    }
    if has_pack {
        return Err(WdlError::new(
            ErrorKind::Type,
            language.pos,
            "a function in Python has no `pack`: the daemon serves it with its Python interpreter",
        )
        .expected("`language: python` with `handler: module:function`, or `pack` alone"));
    }
    let Some(handler) = handler else {
        return Err(WdlError::new(
            ErrorKind::MissingKey,
            language.pos,
            "a function in Python needs its `handler`",
        )
        .expected("`handler: module:function`, like `handler: words:count` for `def count(ctx)` in words.py"));
    };
    let text = handler.str("a handler, like words:count")?;
    if PythonFunction::split_handler(text).is_none() {
        return Err(WdlError::new(
            ErrorKind::Type,
            handler.pos,
            format!("`{text}` is not a handler"),
        )
        .expected("module:function, like `words:count` for `def count(ctx)` in words.py (a package's module: `text.words:count`)"));
    }
    let code = match code {
        Some(c) => {
            let dir = c.str("a directory, like ./functions")?;
            if dir.is_empty() || dir.contains('\0') {
                return Err(WdlError::new(ErrorKind::Type, c.pos, "`code` is not a directory")
                    .expected("a directory, like ./functions (relative to the workflow file)"));
            }
            dir.to_owned()
        }
        None => String::new(),
    };
    let mut modules = Vec::new();
    if let Some(r) = requirements {
        for m in r.seq("a list of modules, like [numpy, PIL]")? {
            let name = m.str("a module name, like numpy")?;
            if !PythonFunction::is_module(name) {
                return Err(
                    WdlError::new(ErrorKind::Type, m.pos, format!("`{name}` is not a module name")).expected(
                        "the name `import` takes, like numpy or PIL.Image (not a pip requirement like numpy>=2)",
                    ),
                );
            }
            modules.push(name.to_owned());
        }
    }
    Ok(Some(PythonFunction {
        handler: text.to_owned(),
        code,
        requirements: modules,
        faasflow_v1: false,
    }))
}

/// A duration longer than 0, in whole ms (rounded up); `what` names the key in errors.
fn positive_ms(v: &Yaml, what: &str) -> Result<u64, WdlError> {
    let ms = v.duration_ms("a duration, like 30s")?.ceil() as u64;
    if ms == 0 {
        return Err(
            WdlError::new(ErrorKind::Type, v.pos, format!("{what} must be longer than 0"))
                .expected("a duration, like 30s"),
        );
    }
    Ok(ms)
}

fn decode_retry(v: &Yaml) -> Result<Retry, WdlError> {
    let mut retry = Retry::default();
    if let Value::Scalar { .. } = v.value {
        retry.attempts = attempts(v)?;
        return Ok(retry);
    }
    let mut f = Fields::new(v, "`retry`")?;
    if let Some(a) = f.get("attempts") {
        retry.attempts = attempts(a)?;
    }
    if let Some(b) = f.get("backoff") {
        retry.backoff_ms = b.duration_ms("a duration, like 100ms")?.ceil() as u64;
    }
    if let Some(j) = f.get("jitter") {
        let jitter = j.f64("a fraction from 0 to 1")?;
        if jitter > 1.0 {
            return Err(WdlError::new(
                ErrorKind::Type,
                j.pos,
                "`jitter` must be a fraction from 0 to 1",
            ));
        }
        retry.jitter = jitter;
    }
    if let Some(on) = f.get("on") {
        retry.on = decode_failure_kinds(on)?;
    }
    f.finish(&["attempts", "backoff", "jitter", "on"])?;
    Ok(retry)
}

/// `retry.on`: a failure kind or a list of them (`[crash, timeout]`).
fn decode_failure_kinds(v: &Yaml) -> Result<FailureKinds, WdlError> {
    let names = || FailureKind::ALL.map(FailureKind::as_str).join(", ");
    let items = v.one_or_many();
    if items.is_empty() {
        return Err(WdlError::new(ErrorKind::Type, v.pos, "`on` lists no kind of failure")
            .expected(format!("one or more of {}", names()))
            .hint("to never retry, write `retry: 1` (one attempt)".to_owned()));
    }
    let mut kinds = FailureKinds::NONE;
    for item in items {
        let (name, pos) = item.name("a kind of failure")?;
        let Some(kind) = FailureKind::from_name(&name) else {
            let mut err = WdlError::new(ErrorKind::Type, pos, format!("`{name}` is not a kind of failure"))
                .expected(format!("one of {}", names()));
            if let Some(m) = did_you_mean(&name, FailureKind::ALL.map(FailureKind::as_str)) {
                err = err.hint(format!("did you mean `{m}`?"));
            }
            return Err(err);
        };
        kinds = kinds.with(kind);
    }
    Ok(kinds)
}

fn attempts(v: &Yaml) -> Result<u32, WdlError> {
    u32::try_from(v.u64("a number of attempts (an integer ≥ 1)")?)
        .ok()
        .filter(|a| (1..=100).contains(a))
        .ok_or_else(|| WdlError::new(ErrorKind::Type, v.pos, "`attempts` must be an integer from 1 to 100"))
}

fn decode_outputs(v: &Yaml) -> Result<Vec<OutputDecl>, WdlError> {
    let mut out = Vec::new();
    match &v.value {
        Value::Seq(items) => {
            for item in items {
                let (name, _) = item.name("an output name")?;
                out.push(OutputDecl {
                    name,
                    kind: ValueKind::Bytes,
                    size: 0,
                });
            }
        }
        _ => {
            for (k, d) in v.map("`outputs`: a list of names, or a mapping of names to {type, size}")? {
                let (name, _) = k.name("an output name")?;
                let (kind, size) = decode_value_decl(d, "an output")?;
                out.push(OutputDecl { name, kind, size });
            }
        }
    }
    Ok(out)
}

/// A list of steps (a single step counts as a list of one; null as empty).
fn decode_steps(v: &Yaml) -> Result<Vec<Step>, WdlError> {
    match &v.value {
        Value::Map(_) => Ok(vec![decode_step(v)?]),
        Value::Null => Ok(Vec::new()),
        _ => v.seq("a list of steps")?.iter().map(decode_step).collect(),
    }
}

fn decode_step(v: &Yaml) -> Result<Step, WdlError> {
    let entries = v.map("a step (a mapping with one of: task, sequence, parallel, switch, foreach)")?;
    let kinds: Vec<&str> = entries
        .iter()
        .filter_map(|(k, _)| key_text(k))
        .filter(|k| STEP_KINDS.contains(k))
        .collect();
    match kinds.as_slice() {
        ["task"] => decode_task(v).map(Step::Task),
        ["sequence"] => decode_sequence(v),
        ["parallel"] => decode_parallel(v),
        ["switch"] => decode_switch(v),
        ["foreach"] => decode_foreach(v),
        [] => {
            let mut err = WdlError::new(
                ErrorKind::MissingKey,
                v.pos,
                "this step says neither what it runs nor how",
            )
            .expected("one of the keys: task, sequence, parallel, switch, foreach");
            if let Some(k) = entries.first().and_then(|(k, _)| key_text(k))
                && let Some(s) = crate::error::did_you_mean(k, STEP_KINDS.iter().copied())
            {
                err = err.hint(format!("did you mean `{s}` instead of `{k}`?"));
            }
            Err(err)
        }
        many => Err(WdlError::new(
            ErrorKind::Type,
            v.pos,
            format!("this step is both {}", many.join(" and ")),
        )
        .expected("exactly one of: task, sequence, parallel, switch, foreach")
        .hint("split it into two steps, one after the other")),
    }
}

fn decode_task(v: &Yaml) -> Result<TaskStep, WdlError> {
    let mut f = Fields::new(v, "a task step")?;
    let name = f.req("task", "the task's name")?.name("the task's name (a string)")?;
    let function = match f.get("function") {
        Some(fun) => fun.name("a function name")?,
        None => name.clone(),
    };
    let inputs = match f.get("inputs") {
        Some(i) => decode_bindings(i, "`inputs`: a mapping of input names to references like step.output")?,
        None => Vec::new(),
    };
    let catch = match f.get("catch") {
        Some(c) => Some(Box::new(decode_catch(c)?)),
        None => None,
    };
    f.finish(&["task", "function", "inputs", "catch"])?;
    Ok(TaskStep {
        name,
        function,
        inputs,
        catch,
    })
}

/// `catch: fallback` (a task of that name calling the function of that name) or
/// `catch: {task: …, function: …, inputs: …}`; a catch step has no catch of its own.
fn decode_catch(v: &Yaml) -> Result<TaskStep, WdlError> {
    if let Value::Scalar { .. } = v.value {
        let name = v.name("the catch step's name (a task that runs when the step fails)")?;
        return Ok(TaskStep {
            function: name.clone(),
            name,
            inputs: Vec::new(),
            catch: None,
        });
    }
    let step = decode_task(v)?;
    if let Some(inner) = &step.catch {
        return Err(WdlError::new(
            ErrorKind::Type,
            inner.name.1,
            format!("catch step `{}` has a catch of its own", step.name.0),
        )
        .expected("a catch step without `catch`")
        .hint("when the catch step fails, the invocation fails with its error"));
    }
    Ok(step)
}

fn decode_bindings(v: &Yaml, what: &str) -> Result<Vec<(Spanned, Vec<Ref>)>, WdlError> {
    let mut out = Vec::new();
    for (k, r) in v.map(what)? {
        let name = k.name("a name")?;
        let refs = match &r.value {
            Value::Seq(items) => items.iter().map(decode_ref).collect::<Result<Vec<_>, _>>()?,
            _ => vec![decode_ref(r)?],
        };
        if refs.is_empty() {
            return Err(
                WdlError::new(ErrorKind::Type, r.pos, format!("`{}` lists no references", name.0))
                    .expected("a reference like step.output, or a list of them"),
            );
        }
        out.push((name, refs));
    }
    Ok(out)
}

/// Parses `head.field`.
pub fn decode_ref(v: &Yaml) -> Result<Ref, WdlError> {
    let text = v.str("a reference like step.output or input.name")?.trim();
    match text.split_once('.') {
        Some((head, field)) if !head.is_empty() && !field.is_empty() && !field.contains('.') => Ok(Ref {
            head: head.to_owned(),
            field: field.to_owned(),
            pos: v.pos,
        }),
        _ => Err(
            WdlError::new(ErrorKind::Type, v.pos, format!("`{text}` is not a reference"))
                .expected("`step.output`, `input.name`, or inside a foreach `each.item` / `each.index`"),
        ),
    }
}

fn decode_sequence(v: &Yaml) -> Result<Step, WdlError> {
    let mut f = Fields::new(v, "a sequence step")?;
    let body = f.req("sequence", "a list of steps")?;
    let name = f.get("name").map(|n| n.name("a name")).transpose()?;
    f.finish(&["sequence", "name"])?;
    Ok(Step::Sequence {
        name,
        steps: decode_steps(body)?,
    })
}

fn decode_parallel(v: &Yaml) -> Result<Step, WdlError> {
    let mut f = Fields::new(v, "a parallel step")?;
    let body = f.req("parallel", "a list of branches")?;
    let name = f.get("name").map(|n| n.name("a name")).transpose()?;
    f.finish(&["parallel", "name"])?;
    let mut branches = Vec::new();
    for b in body.seq("a list of branches (each a step or a list of steps)")? {
        branches.push(decode_steps(b)?);
    }
    Ok(Step::Parallel {
        name,
        pos: v.pos,
        branches,
    })
}

fn decode_switch(v: &Yaml) -> Result<Step, WdlError> {
    let mut f = Fields::new(v, "a switch step")?;
    let body = f.req("switch", "cases and a default")?;
    let name = f.get("name").map(|n| n.name("a name")).transpose()?;
    f.finish(&["switch", "name"])?;
    let mut s = Fields::new(body, "a switch (a mapping with `cases` and `default`)")?;
    let name = match s.get("name") {
        Some(n) => Some(n.name("a name")?),
        None => name,
    };
    let mut cases = Vec::new();
    for c in s
        .req("cases", "a list of {if, then}")?
        .seq("a list of cases, each {if: condition, then: steps}")?
    {
        let mut cf = Fields::new(c, "a switch case")?;
        let cond = cf.req("if", "a CEL condition")?;
        let text = cond.str("a CEL condition (a string)")?.to_owned();
        let then = decode_steps(cf.req("then", "the steps to run when the condition holds (`[]` for none)")?)?;
        cf.finish(&["if", "then"])?;
        cases.push((Condition { text, pos: cond.pos }, then));
    }
    if !s.has("default") {
        return Err(WdlError::new(
            ErrorKind::SwitchWithoutDefault,
            body.pos,
            "this switch has no `default`",
        )
        .expected("`default:` with the steps to run when no case holds")
        .hint("write `default: []` if nothing should run then"));
    }
    let default = match s.get("default") {
        Some(d) => decode_steps(d)?,
        None => Vec::new(),
    };
    s.finish(&["name", "cases", "default"])?;
    Ok(Step::Switch {
        name,
        pos: v.pos,
        cases,
        default,
    })
}

fn decode_foreach(v: &Yaml) -> Result<Step, WdlError> {
    let mut f = Fields::new(v, "a foreach step")?;
    let body = f.req("foreach", "over, do")?;
    let name = f.get("name").map(|n| n.name("a name")).transpose()?;
    f.finish(&["foreach", "name"])?;
    let mut s = Fields::new(body, "a foreach (a mapping with `over` and `do`)")?;
    let name = match s.get("name") {
        Some(n) => Some(n.name("a name")?),
        None => name,
    };
    let over = decode_ref(s.req("over", "a reference to a list, like split.chunks")?)?;
    let max_concurrency = match s.get("max_concurrency") {
        Some(m) => u32::try_from(m.u64("an integer (0 = no limit)")?)
            .map_err(|_| WdlError::new(ErrorKind::Type, m.pos, "`max_concurrency` is too large"))?,
        None => 0,
    };
    let width = match s.get("width") {
        Some(w) => u32::try_from(w.u64("an expected number of elements")?)
            .ok()
            .filter(|w| *w >= 1)
            .ok_or_else(|| WdlError::new(ErrorKind::Type, w.pos, "`width` must be an integer ≥ 1"))?,
        None => 4,
    };
    let steps = decode_steps(s.req("do", "the steps to run for each element")?)?;
    s.finish(&["name", "over", "max_concurrency", "width", "do"])?;
    Ok(Step::Foreach {
        name,
        pos: v.pos,
        over,
        max_concurrency,
        width,
        body: steps,
    })
}
