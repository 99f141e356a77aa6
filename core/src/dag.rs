//! The compiled workflow: a DAG of tasks and virtual control nodes.
//!
//! Every front end (native WDL, FaaSFlow's flat and hierarchical files) produces a
//! [`Workflow`]. Node and edge indices are assigned in source order, so the same file always
//! gives the same graph.
//!
//! ## Execution semantics (what the daemon implements)
//! - A node becomes ready when every predecessor is *done* or *skipped*.
//! - Its **activation edges** are its control edges, or all its edges when it has no control
//!   edge. A node with predecessors is *skipped* when every activation edge is skipped;
//!   otherwise it runs. An edge is skipped when its source is skipped, or when its source is a
//!   switch and the edge's `case` is not the case the switch chose.
//! - An input whose producer was skipped is absent; an input with several sources takes the
//!   first source that was not skipped. This is how a join after a switch reads "whichever
//!   branch ran".
//! - A task that fails for good (its retries spent) fails the invocation, unless it has a
//!   **catch step** (an [`Edge::on_failure`] edge to it): the task is then *caught*, which
//!   counts as skipped for every other edge, and the catch step runs with the failure as its
//!   input `error` (a JSON object: `step`, `element`, `error`, `kind`, `attempts`). The catch
//!   step is skipped when the task succeeds or is skipped. Readers of the task's outputs also
//!   read the catch step's outputs of the same names (the first that ran), so the steps after
//!   a caught task run on the catch step's outputs.
//! - A [`NodeKind::Foreach`] node runs the nodes of its scope (those whose `scope` is it) once
//!   per element of its list, at most `max_concurrency` at a time; its `collect` node fires when
//!   all elements are done. An output of a scoped node read from outside the scope is the
//!   ordered list of the per-element outputs.

use petgraph::graph::{DiGraph, EdgeIndex, NodeIndex};
use serde::Serialize;

use crate::Pos;

/// The input a catch step receives the failure as.
pub const CATCH_INPUT: &str = "error";

/// Index of a node in [`Workflow::graph`].
pub type NodeId = NodeIndex<u32>;
/// Index of an edge in [`Workflow::graph`].
pub type EdgeId = EdgeIndex<u32>;

/// Which kind of file a workflow came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceFormat {
    /// faasflow's own workflow language (docs/wdl.md).
    Native,
    /// FaaSFlow v1.1 `flat_workflow.yaml`.
    FaasflowFlat,
    /// FaaSFlow v1.1 hierarchical `workflow.yaml`.
    FaasflowHierarchical,
}

impl SourceFormat {
    /// A stable short name.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceFormat::Native => "native",
            SourceFormat::FaasflowFlat => "faasflow-flat",
            SourceFormat::FaasflowHierarchical => "faasflow-hierarchical",
        }
    }
}

/// A compiled workflow.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// The workflow's name.
    pub name: String,
    /// The form of the source file.
    pub format: SourceFormat,
    /// Tasks and virtual control nodes; edges carry control and data.
    pub graph: DiGraph<Node, Edge, u32>,
    /// The workflow's inputs, in declaration (or discovery) order.
    pub inputs: Vec<WorkflowInput>,
    /// The workflow's outputs.
    pub outputs: Vec<WorkflowOutput>,
    /// Pairs of tasks the partitioner never puts into one group (declared contention): they
    /// never share an instance and never hand data over in-process.
    pub contention: Vec<(NodeId, NodeId)>,
    /// Time limit of one invocation, ms (`deadline`), when the workflow declares one.
    pub deadline_ms: Option<u64>,
}

/// One input of the workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowInput {
    /// Its name (`input.<name>` in references).
    pub name: String,
    /// What kind of value it is.
    pub kind: ValueKind,
    /// Its expected size in bytes (a planner hint).
    pub size: u64,
}

/// Largest synthetic value [`fill_staged_inputs`] writes for one input.
pub const MAX_STAGED_INPUT: u64 = 64 << 20;

/// FaaSFlow's workflows read files staged in its storage before the run: their inputs that no
/// function produces (`wf.inputs` of an imported workflow). Those `input` (a JSON object) does
/// not give are filled with bytes of their declared size times `scale` (at most
/// [`MAX_STAGED_INPUT`] each), as FaaSFlow's benchmark bodies expect. Returns how many were
/// filled and their bytes. Native workflows name their inputs and are left as they are.
pub fn fill_staged_inputs(wf: &Workflow, input: &mut serde_json::Value, scale: f64) -> (usize, u64) {
    let Some(map) = input.as_object_mut() else {
        return (0, 0);
    };
    if wf.format == SourceFormat::Native {
        return (0, 0);
    }
    let (mut filled, mut bytes) = (0usize, 0u64);
    for i in &wf.inputs {
        if map.contains_key(&i.name) {
            continue;
        }
        let len = ((i.size as f64 * scale.max(0.0)).round() as u64).min(MAX_STAGED_INPUT);
        map.insert(i.name.clone(), serde_json::Value::String("x".repeat(len as usize)));
        filled += 1;
        bytes += len;
    }
    (filled, bytes)
}

/// One output of the workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowOutput {
    /// Its name in the result.
    pub name: String,
    /// Where it comes from: the first source that was not skipped.
    pub sources: Vec<DataSource>,
}

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataSource {
    /// A workflow input.
    Input(String),
    /// A named output of a node.
    Output {
        /// The producing node.
        node: NodeId,
        /// The output's name.
        output: String,
    },
    /// The current element of a foreach (its node).
    Item(NodeId),
    /// The index of the current element of a foreach (its node).
    Index(NodeId),
}

/// A node of the DAG.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Unique name (the task name, or a generated name for virtual nodes).
    pub name: String,
    /// Where it was defined.
    pub pos: Pos,
    /// What it does.
    pub kind: NodeKind,
    /// The innermost foreach whose body this node belongs to.
    pub scope: Option<NodeId>,
}

impl Node {
    /// True for control nodes that run no function.
    pub fn is_virtual(&self) -> bool {
        !matches!(self.kind, NodeKind::Task(_))
    }

    /// The task, if this node is one.
    pub fn task(&self) -> Option<&Task> {
        match &self.kind {
            NodeKind::Task(t) => Some(t),
            _ => None,
        }
    }

    /// The task, if this node is one, to change.
    pub fn task_mut(&mut self) -> Option<&mut Task> {
        match &mut self.kind {
            NodeKind::Task(t) => Some(t),
            _ => None,
        }
    }
}

/// What a node does.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// Calls a function.
    Task(Task),
    /// Chooses one of its successors by CEL conditions.
    Switch(Switch),
    /// Runs its scope once per element of a list.
    Foreach(Foreach),
    /// A barrier that does nothing: the end of a parallel, a foreach's collection point,
    /// FaaSFlow's virtual pass nodes and `END`.
    Join(JoinKind),
}

impl NodeKind {
    /// A stable short name of the kind.
    pub fn as_str(&self) -> &'static str {
        match self {
            NodeKind::Task(_) => "task",
            NodeKind::Switch(_) => "switch",
            NodeKind::Foreach(_) => "foreach",
            NodeKind::Join(JoinKind::Parallel) => "join",
            NodeKind::Join(JoinKind::Collect) => "collect",
            NodeKind::Join(JoinKind::Pass) => "pass",
            NodeKind::Join(JoinKind::End) => "end",
        }
    }
}

/// Why a join node exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// The end of a `parallel` step.
    Parallel,
    /// Where a foreach's elements are gathered.
    Collect,
    /// A FaaSFlow virtual node with a `pass` or `parallel` next.
    Pass,
    /// FaaSFlow's `END`.
    End,
}

/// A function call.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// The function called.
    pub function: String,
    /// The function's settings.
    pub spec: FunctionSpec,
    /// The inputs the function receives.
    pub inputs: Vec<InputBinding>,
}

impl Task {
    /// The workflow input that binding `name` reads, when that input is its one source (a
    /// staged input is then read as its object).
    pub fn reads_input_alone(&self, name: &str) -> Option<&str> {
        match self.inputs.iter().find(|b| b.name == name)?.sources.as_slice() {
            [DataSource::Input(i)] => Some(i),
            _ => None,
        }
    }
}

/// One input of a task.
#[derive(Debug, Clone, PartialEq)]
pub struct InputBinding {
    /// The name the function reads it by.
    pub name: String,
    /// The first of these that was not skipped.
    pub sources: Vec<DataSource>,
}

/// A function's settings and the planner's hints about it.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    /// The pack that hosts the function; `None` runs the synthetic benchmark body.
    pub pack: Option<String>,
    /// Container image, when the function runs in a container.
    pub image: Option<String>,
    /// Memory given to one instance, MiB.
    pub memory_mib: u64,
    /// CPU given to one instance, in millicores.
    pub cpu_millis: u32,
    /// Time limit of one attempt, ms.
    pub timeout_ms: u64,
    /// Retry policy.
    pub retry: Retry,
    /// Whether it may share an instance with other functions.
    pub isolation: Isolation,
    /// Container slots (instances) the function uses on its worker.
    pub scale: u32,
    /// Expected runtime of one call, ms (planner hint).
    pub runtime_ms: f64,
    /// Expected peak memory use of one instance, MiB (planner hint; measured values replace it).
    pub memory_use_mib: f64,
    /// The outputs the function produces.
    pub outputs: Vec<OutputDecl>,
    /// Whether it gets a network when it runs in a container (otherwise only loopback;
    /// processes always have the host's).
    pub network: bool,
    /// Running it again with the same inputs is safe: an invocation of a workflow whose
    /// functions all are is run again from its input when a worker it used is lost.
    pub idempotent: bool,
    /// A function written in Python (`language: python`): its handler and code. `None`: a
    /// function of a pack (or the synthetic body).
    pub python: Option<Box<PythonFunction>>,
}

/// Where a Python function is: the daemon serves it with `python -m faasflow.serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonFunction {
    /// `module:function` (the module dotted, as `import` names it).
    pub handler: String,
    /// The directory added to `sys.path` (absolute; the workflow file's own by default).
    pub code: String,
    /// Modules that must be importable where it runs, checked when a daemon installs it.
    pub requirements: Vec<String>,
    /// A function of FaaSFlow v1.1, unmodified: `main()` in `code/main.py`, which reads and
    /// writes through a global `store` (`store.fetch([keys])`, `store.put({key: value}, {})`).
    pub faasflow_v1: bool,
}

impl PythonFunction {
    /// Splits a handler `module:function` into its module (dotted names) and function (a name),
    /// or `None` when it is not of that form.
    /// ```
    /// use faasflow_core::dag::PythonFunction;
    /// assert_eq!(PythonFunction::split_handler("words.count:main"), Some(("words.count", "main")));
    /// assert_eq!(PythonFunction::split_handler("words.count"), None);
    /// assert_eq!(PythonFunction::split_handler("2words:main"), None);
    /// ```
    pub fn split_handler(handler: &str) -> Option<(&str, &str)> {
        let (module, function) = handler.split_once(':')?;
        (is_module(module) && is_identifier(function)).then_some((module, function))
    }

    /// Whether `name` is a module name as `import` takes it (`numpy`, `os.path`).
    /// ```
    /// assert!(faasflow_core::dag::PythonFunction::is_module("os.path"));
    /// assert!(!faasflow_core::dag::PythonFunction::is_module("os..path"));
    /// ```
    pub fn is_module(name: &str) -> bool {
        is_module(name)
    }

    /// The name the function is served under by its interpreter: its handler, or for a
    /// FaaSFlow function the path of its `main.py`.
    /// ```
    /// use faasflow_core::dag::PythonFunction;
    /// let mut f = PythonFunction {
    ///     handler: "words:count".into(),
    ///     code: "/srv".into(),
    ///     requirements: vec![],
    ///     faasflow_v1: false,
    /// };
    /// assert_eq!(f.served_as(), "words:count");
    /// f.faasflow_v1 = true;
    /// assert_eq!(f.served_as(), "/srv/main.py");
    /// ```
    pub fn served_as(&self) -> String {
        if self.faasflow_v1 {
            format!("{}/main.py", self.code.trim_end_matches('/'))
        } else {
            self.handler.clone()
        }
    }
}

fn is_module(name: &str) -> bool {
    name.split('.').all(is_identifier)
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_alphabetic()) && chars.all(|c| c == '_' || c.is_alphanumeric())
}

impl FunctionSpec {
    /// The declared output with this name.
    pub fn output(&self, name: &str) -> Option<&OutputDecl> {
        self.outputs.iter().find(|o| o.name == name)
    }
}

/// A declared output.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputDecl {
    /// Its name.
    pub name: String,
    /// What kind of value it is.
    pub kind: ValueKind,
    /// Expected size in bytes (planner hint).
    pub size: u64,
}

/// The kind of a value, as far as the workflow needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ValueKind {
    /// Opaque bytes.
    Bytes,
    /// A JSON value (switch conditions can read it).
    Json,
    /// A JSON list (foreach can iterate it).
    List,
}

impl ValueKind {
    /// The name used in WDL.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueKind::Bytes => "bytes",
            ValueKind::Json => "json",
            ValueKind::List => "list",
        }
    }
}

/// Retry policy of a function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// Wait before the second attempt, ms; doubles each attempt.
    pub backoff_ms: u64,
    /// Random spread of the wait, as a fraction (0.0–1.0).
    pub jitter: f64,
    /// The kinds of failure that are retried (the others fail the step at once).
    pub on: FailureKinds,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 1,
            backoff_ms: 100,
            jitter: 0.0,
            on: FailureKinds::ALL,
        }
    }
}

/// Why a function attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The function returned an error.
    Error,
    /// The function panicked (its instance lives on).
    Panic,
    /// Its instance died (exit, signal, out of memory), could not start, or broke the
    /// protocol.
    Crash,
    /// The attempt ran past the function's `timeout` and was stopped.
    Timeout,
    /// Its inputs could not be read or its outputs kept (remote tier, arena, spill files).
    Data,
}

impl FailureKind {
    /// Every kind, in the order `retry.on` lists them.
    pub const ALL: [FailureKind; 5] = [
        FailureKind::Error,
        FailureKind::Panic,
        FailureKind::Crash,
        FailureKind::Timeout,
        FailureKind::Data,
    ];

    /// The name used in WDL (`retry.on`) and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Error => "error",
            FailureKind::Panic => "panic",
            FailureKind::Crash => "crash",
            FailureKind::Timeout => "timeout",
            FailureKind::Data => "data",
        }
    }

    /// The kind with this WDL name.
    pub fn from_name(name: &str) -> Option<FailureKind> {
        FailureKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of [`FailureKind`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FailureKinds(u8);

impl FailureKinds {
    /// Every kind.
    pub const ALL: FailureKinds = FailureKinds(0b1_1111);
    /// No kind.
    pub const NONE: FailureKinds = FailureKinds(0);

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: FailureKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// The set with `kind` added.
    #[must_use]
    pub fn with(self, kind: FailureKind) -> FailureKinds {
        FailureKinds(self.0 | kind.bit())
    }

    /// Its kinds, in [`FailureKind::ALL`] order.
    pub fn kinds(self) -> impl Iterator<Item = FailureKind> {
        FailureKind::ALL.into_iter().filter(move |k| self.contains(*k))
    }

    /// True when it holds no kind.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// How a function is isolated from the other functions of its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// May run as a thread in an instance shared with other functions of its group.
    Thread,
    /// Always has an instance (process) of its own.
    Process,
    /// Always has a container of its own.
    Container,
}

impl Isolation {
    /// The name used in WDL.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Thread => "thread",
            Isolation::Process => "process",
            Isolation::Container => "container",
        }
    }
}

/// A switch: case `i` is taken when `cases[i]` is the first condition that holds; the
/// default is case `cases.len()`.
#[derive(Debug, Clone, PartialEq)]
pub struct Switch {
    /// The conditions, in order.
    pub cases: Vec<Case>,
}

/// One condition of a switch.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// A CEL expression over `input` and the outputs of earlier steps (`step.output`).
    pub condition: String,
    /// Where it was written.
    pub pos: Pos,
}

/// A foreach: runs its scope once per element of `over`.
#[derive(Debug, Clone, PartialEq)]
pub struct Foreach {
    /// The list iterated over.
    pub over: DataSource,
    /// At most this many elements run at once (0 = no limit).
    pub max_concurrency: u32,
    /// Expected number of elements (planner hint).
    pub width: u32,
    /// The join node that gathers the elements.
    pub collect: NodeId,
}

/// An edge: control (ordering, switch cases) and/or data.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Edge {
    /// The target is activated by this edge (sequence order, parallel branches, switch cases).
    pub control: bool,
    /// For edges leaving a switch: the case that takes this edge.
    pub case: Option<u32>,
    /// Outputs of the source read by the target: (output, input).
    pub data: Vec<(String, String)>,
    /// Expected bytes of the objects the edge carries per invocation (planner hint). Each
    /// object counts once: a value read by every element of a foreach counts once, the outputs
    /// of a foreach body read after the foreach count for all its elements.
    pub bytes: u64,
    /// A `catch` edge: from a task to the step that runs in its place when it fails for good
    /// (a control edge, taken only then).
    pub on_failure: bool,
}

/// A string input of at least this many bytes that only tasks read is *staged*: it travels
/// apart from the invocation's control messages, as an object (pushed to the workers whose
/// tasks read it in WorkerSP, stored in the remote tier in MasterSP), and is read by reference.
pub const STAGE_MIN_BYTES: usize = 16 * 1024;

impl Workflow {
    /// The inputs that switch conditions or foreach lists read (every engine needs their
    /// values).
    pub fn inputs_read_by_control(&self) -> std::collections::HashSet<String> {
        let names: Vec<&String> = self.inputs.iter().map(|i| &i.name).collect();
        let mut read = std::collections::HashSet::new();
        for n in self.graph.node_indices() {
            match &self.graph[n].kind {
                NodeKind::Switch(sw) => {
                    for c in &sw.cases {
                        for name in &names {
                            if c.condition.contains(&format!("input.{name}")) || c.condition.contains("input[") {
                                read.insert((*name).clone());
                            }
                        }
                    }
                }
                NodeKind::Foreach(f) => {
                    if let DataSource::Input(name) = &f.over {
                        read.insert(name.clone());
                    }
                }
                _ => {}
            }
        }
        read
    }

    /// The inputs that may be staged ([`STAGE_MIN_BYTES`]), in declaration order: read only
    /// by tasks, each through a binding of that one source (not by conditions, foreach lists or
    /// the workflow's outputs, which need the JSON value).
    pub fn stageable_inputs(&self) -> Vec<String> {
        let mut not = self.inputs_read_by_control();
        let sources = self.outputs.iter().flat_map(|o| o.sources.iter()).chain(
            self.graph
                .node_indices()
                .filter_map(|n| self.graph[n].task())
                .flat_map(|t| t.inputs.iter().filter(|b| b.sources.len() > 1))
                .flat_map(|b| b.sources.iter()),
        );
        for src in sources {
            if let DataSource::Input(i) = src {
                not.insert(i.clone());
            }
        }
        self.inputs
            .iter()
            .filter(|i| !not.contains(&i.name))
            .map(|i| i.name.clone())
            .collect()
    }

    /// The task outputs the workflow's result reads, as (node index, output name): an engine
    /// keeps them until the invocation ends, and a daemon sends them to the invocation's entry.
    pub fn result_reads(&self) -> std::collections::HashSet<(u32, String)> {
        self.outputs
            .iter()
            .flat_map(|o| o.sources.iter())
            .filter_map(|s| match s {
                DataSource::Output { node, output } => Some((node.index() as u32, output.clone())),
                _ => None,
            })
            .collect()
    }

    /// Creates an empty workflow.
    pub fn new(name: impl Into<String>, format: SourceFormat) -> Self {
        Workflow {
            name: name.into(),
            format,
            graph: DiGraph::default(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            contention: Vec::new(),
            deadline_ms: None,
        }
    }

    /// Whether every task's function is idempotent (the invocation may be run again from its
    /// input).
    pub fn idempotent(&self) -> bool {
        self.graph
            .node_weights()
            .filter_map(Node::task)
            .all(|t| t.spec.idempotent)
    }

    /// The node with this name.
    pub fn node_by_name(&self, name: &str) -> Option<NodeId> {
        self.graph.node_indices().find(|&n| self.graph[n].name == name)
    }

    /// Container slots the workflow's functions need together (the sum of their `scale`).
    pub fn slots_needed(&self) -> u64 {
        self.graph
            .node_weights()
            .filter_map(Node::task)
            .map(|t| u64::from(t.spec.scale))
            .sum()
    }

    /// Number of task (function) nodes.
    pub fn task_count(&self) -> usize {
        self.graph.node_weights().filter(|n| !n.is_virtual()).count()
    }

    /// Which nodes run in one invocation when each switch takes the case given in `choices`
    /// (a switch not listed takes its default): the skip rule of the module docs, applied in
    /// topological order. A foreach body counts as one element. This is the reference the
    /// daemon's engine is tested against. The graph must be acyclic, as every compiled
    /// workflow is.
    pub fn runs(&self, choices: &std::collections::BTreeMap<NodeId, u32>) -> Vec<bool> {
        use petgraph::Direction;
        use petgraph::visit::EdgeRef;
        let chosen = |n: NodeId| match &self.graph[n].kind {
            NodeKind::Switch(s) => Some(choices.get(&n).copied().unwrap_or(s.cases.len() as u32)),
            _ => None,
        };
        let mut ran = vec![false; self.graph.node_count()];
        for v in self.topo_order() {
            let incoming: Vec<_> = self.graph.edges_directed(v, Direction::Incoming).collect();
            let has_control = incoming.iter().any(|e| e.weight().control);
            let mut activation = incoming
                .iter()
                .filter(|e| e.weight().control || !has_control)
                .peekable();
            ran[v.index()] = activation.peek().is_none()
                || activation.any(|e| {
                    let s = e.source();
                    // Without failures, no catch step runs.
                    ran[s.index()]
                        && !e.weight().on_failure
                        && (e.weight().case.is_none() || e.weight().case == chosen(s))
                });
        }
        ran
    }

    /// Nodes in a topological order that is stable for a given graph (Kahn's algorithm,
    /// smallest index first). The compiler guarantees the graph is acyclic.
    pub fn topo_order(&self) -> Vec<NodeId> {
        crate::graph::topo_order(&self.graph).unwrap_or_default()
    }
}
