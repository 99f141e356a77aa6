//! The engine driven by a simulated executor on a virtual clock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use faasflow_core::NodeId;
use faasflow_core::dag::{FailureKind, NodeKind, ValueKind, Workflow};
use faasflow_core::engine::{
    Action, Engine, EngineConfig, EngineError, Event, Failure, Follower, InputValue, ObjectRef,
};
use petgraph::Direction;
use petgraph::visit::EdgeRef;
use proptest::prelude::*;

type Inst = (NodeId, Option<u32>);
/// A recorded trigger: instance, attempt, time, inputs.
type Triggered = (Inst, u32, Duration, Vec<(String, InputValue)>);

/// What the simulated functions do.
#[derive(Clone)]
struct Behaviour {
    /// The value of every `json` output.
    flag: serde_json::Value,
    /// The length of every `list` output.
    width: usize,
    /// Per task name: how many attempts fail first ("fail") or hang ("hang").
    fail: HashMap<String, (u32, bool)>,
    /// The kind of the failures of "fail".
    kind: FailureKind,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            flag: serde_json::Value::Bool(true),
            width: 3,
            fail: HashMap::new(),
            kind: FailureKind::Error,
        }
    }
}

struct Sim {
    wf: Arc<Workflow>,
    engine: Engine,
    now: Duration,
    seq: u64,
    next_obj: u64,
    live: HashMap<u64, Inst>,
    /// Every object made, by its producer (released ones too).
    made_by: HashMap<u64, NodeId>,
    released: HashSet<u64>,
    /// Running attempts: instance → (attempt, inputs' objects).
    running: BTreeMap<(u32, Option<u32>), (u32, Vec<u64>)>,
    triggered: HashMap<Inst, u64>,
    completed: HashMap<Inst, u64>,
    triggers: Vec<Triggered>,
    cancels: Vec<Inst>,
    finished: Option<Result<Vec<(String, InputValue)>, String>>,
    max_in_flight: HashMap<NodeId, usize>,
    /// Completions whose follower was foreseen (and checked).
    followed: usize,
    rng: u64,
    behaviour: Behaviour,
    input: serde_json::Value,
}

impl Sim {
    fn new(wf: Workflow, seed: u64, behaviour: Behaviour) -> Sim {
        let wf = Arc::new(wf);
        let mut engine = Engine::new(EngineConfig { seed });
        let local = wf.graph.node_indices().collect();
        engine.install(wf.clone(), 1, local).unwrap();
        Sim {
            wf,
            engine,
            now: Duration::ZERO,
            seq: 0,
            next_obj: 1,
            live: HashMap::new(),
            made_by: HashMap::new(),
            released: HashSet::new(),
            running: BTreeMap::new(),
            triggered: HashMap::new(),
            completed: HashMap::new(),
            triggers: Vec::new(),
            cancels: Vec::new(),
            finished: None,
            max_in_flight: HashMap::new(),
            followed: 0,
            rng: seed | 1,
            behaviour,
            input: serde_json::Value::Null,
        }
    }

    fn default_input(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (i, input) in self.wf.inputs.iter().enumerate() {
            let v = match input.kind {
                ValueKind::List => serde_json::json!((0..self.behaviour.width).collect::<Vec<_>>()),
                ValueKind::Json => serde_json::json!(i),
                ValueKind::Bytes => serde_json::json!(format!("bytes of {}", input.name)),
            };
            m.insert(input.name.clone(), v);
        }
        serde_json::Value::Object(m)
    }

    fn next_rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn drain(&mut self) {
        while let Some(a) = self.engine.poll_action() {
            self.seq += 1;
            match a {
                Action::Trigger {
                    invocation,
                    node,
                    element,
                    attempt,
                    inputs,
                } => {
                    assert_eq!(invocation, 7);
                    assert!(self.finished.is_none(), "trigger after the end");
                    let inst = (node, element);
                    self.check_predecessors_done(inst);
                    let mut objs = Vec::new();
                    for (_, v) in &inputs {
                        match v {
                            InputValue::Object(o) => objs.push(o.id),
                            InputValue::List(l) => {
                                let elems: Vec<_> = l.iter().map(|o| self.live[&o.id].1).collect();
                                assert!(elems.windows(2).all(|w| w[0] < w[1]), "list out of order: {elems:?}");
                                objs.extend(l.iter().map(|o| o.id));
                            }
                            _ => {}
                        }
                    }
                    for id in &objs {
                        assert!(self.live.contains_key(id), "input object {id} already released");
                    }
                    self.triggered.entry(inst).or_insert(self.seq);
                    let prev = self.running.insert((node.index() as u32, element), (attempt, objs));
                    assert!(prev.is_none(), "{inst:?} triggered twice");
                    self.triggers.push((inst, attempt, self.now, inputs));
                    self.check_concurrency();
                }
                Action::Cancel { node, element, .. } => {
                    self.running.remove(&(node.index() as u32, element));
                    self.cancels.push((node, element));
                }
                // One engine runs every task: nobody else to tell.
                Action::Caught { node, element, .. } => {
                    assert!(self.finished.is_none(), "caught after the end");
                    self.completed.insert((node, element), self.seq);
                }
                Action::Release { object } => {
                    assert!(self.released.insert(object), "object {object} released twice");
                    assert!(self.live.remove(&object).is_some(), "unknown object {object}");
                    for (k, (_, objs)) in &self.running {
                        assert!(!objs.contains(&object), "object {object} released while {k:?} reads it");
                    }
                }
                Action::Finished { result, .. } => {
                    assert!(self.finished.is_none());
                    if let Ok(outputs) = &result {
                        // Only the result's objects are still held: nothing leaked until the end.
                        let mut held: HashSet<u64> = HashSet::new();
                        for (_, v) in outputs {
                            match v {
                                InputValue::Object(o) => {
                                    held.insert(o.id);
                                }
                                InputValue::List(l) => held.extend(l.iter().map(|o| o.id)),
                                _ => {}
                            }
                        }
                        let live: HashSet<u64> = self.live.keys().copied().collect();
                        assert_eq!(live, held, "objects held past their last reader");
                    }
                    self.finished = Some(result.map_err(|e| e.to_string()));
                }
            }
        }
    }

    fn check_concurrency(&mut self) {
        let mut per: HashMap<NodeId, HashSet<u32>> = HashMap::new();
        for &(n, e) in self.running.keys() {
            if let (Some(f), Some(e)) = (self.wf.graph[NodeId::new(n as usize)].scope, e) {
                per.entry(f).or_default().insert(e);
            }
        }
        for (f, els) in per {
            let m = self.max_in_flight.entry(f).or_default();
            *m = (*m).max(els.len());
            if let NodeKind::Foreach(fe) = &self.wf.graph[f].kind
                && fe.max_concurrency > 0
            {
                assert!(
                    els.len() <= fe.max_concurrency as usize,
                    "{} elements in flight",
                    els.len()
                );
            }
        }
    }

    /// The nearest task ancestors of an instance.
    fn task_preds(&self, (n, e): Inst, out: &mut Vec<Inst>) {
        let scope = self.wf.graph[n].scope;
        for edge in self.wf.graph.edges_directed(n, Direction::Incoming) {
            let p = edge.source();
            let pscope = self.wf.graph[p].scope;
            let insts: Vec<Inst> = if scope == Some(p) {
                vec![(p, None)]
            } else if pscope == scope {
                vec![(p, e)]
            } else if pscope.is_none() {
                vec![(p, None)]
            } else {
                (0..64).map(|i| (p, Some(i))).collect()
            };
            for inst in insts {
                if self.wf.graph[p].is_virtual() {
                    self.task_preds(inst, out);
                } else {
                    out.push(inst);
                }
            }
        }
    }

    fn check_predecessors_done(&self, inst: Inst) {
        let mut preds = Vec::new();
        self.task_preds(inst, &mut preds);
        for p in preds {
            if self.triggered.contains_key(&p) {
                assert!(
                    self.completed.contains_key(&p),
                    "{inst:?} triggered before {p:?} completed"
                );
            }
        }
    }

    /// After the run: every task that completed did so before any successor was triggered.
    fn check_order(&self) {
        for (&inst, &t) in &self.triggered {
            let mut preds = Vec::new();
            self.task_preds(inst, &mut preds);
            for p in preds {
                if let Some(&c) = self.completed.get(&p) {
                    assert!(c < t, "{inst:?} triggered before {p:?} completed");
                }
            }
        }
    }

    fn outputs_for(&mut self, inst: Inst) -> Vec<(String, ObjectRef)> {
        let task = self.wf.graph[inst.0].task().unwrap().clone();
        let mut out = Vec::new();
        for o in &task.spec.outputs {
            let json = match o.kind {
                ValueKind::Bytes => None,
                ValueKind::Json => Some(self.behaviour.flag.clone()),
                ValueKind::List => Some(serde_json::json!((0..self.behaviour.width).collect::<Vec<_>>())),
            };
            let id = self.next_obj;
            self.next_obj += 1;
            self.live.insert(id, inst);
            self.made_by.insert(id, inst.0);
            out.push((
                o.name.clone(),
                ObjectRef {
                    id,
                    len: o.size,
                    json: json.map(Arc::new),
                },
            ));
        }
        out
    }

    /// Completes running attempts in a random order until the invocation ends.
    fn run(&mut self, input: serde_json::Value) {
        self.input = input.clone();
        self.engine.start(self.now, &self.wf.name.clone(), 1, 7, input).unwrap();
        self.drain();
        let mut steps = 0;
        while self.finished.is_none() {
            steps += 1;
            assert!(steps < 100_000, "no progress");
            let ready: Vec<_> = self
                .running
                .iter()
                .filter(|((n, _), (attempt, _))| {
                    let name = &self.wf.graph[NodeId::new(*n as usize)].name;
                    !matches!(self.behaviour.fail.get(name), Some((k, true)) if attempt <= k)
                })
                .map(|(k, v)| (*k, v.0))
                .collect();
            if ready.is_empty() {
                let t = self.engine.poll_timeout().expect("stuck: nothing runs and no timer");
                self.now = self.now.max(t);
                self.engine.tick(self.now);
                self.drain();
                continue;
            }
            let pick = (self.next_rand() % ready.len() as u64) as usize;
            let ((n, e), attempt) = ready[pick];
            self.now += Duration::from_millis(1);
            if self.engine.poll_timeout().is_some_and(|t| t <= self.now) {
                self.engine.tick(self.now);
                self.drain();
                if !self.running.contains_key(&(n, e)) {
                    continue;
                }
            }
            let node = NodeId::new(n as usize);
            let name = self.wf.graph[node].name.clone();
            self.running.remove(&(n, e));
            self.seq += 1;
            if matches!(self.behaviour.fail.get(&name), Some((k, false)) if attempt <= *k) {
                let error = format!("boom {attempt}");
                let event = Event::FunctionFailed {
                    invocation: 7,
                    node,
                    element: e,
                    error,
                    kind: self.behaviour.kind,
                };
                self.engine.handle(self.now, event);
            } else {
                self.completed.insert((node, e), self.seq);
                let follower = self.engine.follower(7, node, e);
                let outs = self.outputs_for((node, e));
                let before = self.triggers.len();
                self.engine.function_done(self.now, 7, node, e, outs.clone());
                self.drain();
                if let Some(f) = follower {
                    self.followed += 1;
                    self.check_follower(&f, e, &outs, before);
                }
            }
            self.drain();
        }
        // Late completions of cancelled work: released at once.
        let late: Vec<_> = std::mem::take(&mut self.running).into_keys().collect();
        for (n, e) in late {
            let outs = self.outputs_for((NodeId::new(n as usize), e));
            self.engine.function_done(self.now, 7, NodeId::new(n as usize), e, outs);
        }
        self.drain();
        assert_eq!(self.engine.invocations_in_flight(), 0);
        assert_eq!(self.engine.objects_held(), 0);
        assert_eq!(self.engine.timers_pending(), 0);
        assert!(self.live.is_empty(), "objects never released: {:?}", self.live);
        self.check_order();
    }

    /// The follower foreseen while its task ran was triggered by the task's success, with
    /// exactly the outputs foreseen as its inputs.
    fn check_follower(&self, f: &Follower, e: Option<u32>, outs: &[(String, ObjectRef)], before: usize) {
        let name = &self.wf.graph[f.node].name;
        let Some((_, attempt, _, inputs)) = self.triggers[before..].iter().find(|t| t.0 == (f.node, e)) else {
            panic!("{name} (element {e:?}) was foreseen to follow, and was not triggered");
        };
        assert_eq!(*attempt, 1);
        assert_eq!(inputs.len(), f.inputs.len(), "{name}: {inputs:?} vs {f:?}");
        for (input, output) in &f.inputs {
            let got = inputs.iter().find(|(n, _)| n == input).map(|(_, v)| v);
            let want = outs.iter().find(|(n, _)| n == output).map(|(_, o)| o);
            match (got, want) {
                (Some(InputValue::Object(g)), Some(w)) => assert_eq!(g.id, w.id, "{name}.{input}"),
                other => panic!("{name}.{input}: {other:?}"),
            }
        }
    }

    fn live_or_released_producer(&self, object: u64) -> NodeId {
        self.made_by[&object]
    }

    fn executed_tasks(&self) -> HashSet<NodeId> {
        self.completed.keys().map(|k| k.0).collect()
    }

    /// The case each switch's conditions choose, evaluated here independently of the engine
    /// (with `cel::to_value`): every task's `json` outputs are `flag`.
    fn expected_choices(&self) -> BTreeMap<NodeId, u32> {
        let mut ctx = cel::Context::default();
        ctx.add_variable_from_value("input", cel::to_value(&self.input).unwrap());
        for n in self.wf.graph.node_indices() {
            let Some(task) = self.wf.graph[n].task() else { continue };
            let fields: serde_json::Map<_, _> = task
                .spec
                .outputs
                .iter()
                .filter(|o| o.kind == ValueKind::Json)
                .map(|o| (o.name.clone(), self.behaviour.flag.clone()))
                .collect();
            if !fields.is_empty() {
                let v = cel::to_value(serde_json::Value::Object(fields)).unwrap();
                ctx.add_variable_from_value(self.wf.graph[n].name.clone(), v);
            }
        }
        let mut choices = BTreeMap::new();
        for n in self.wf.graph.node_indices() {
            let NodeKind::Switch(s) = &self.wf.graph[n].kind else {
                continue;
            };
            let chosen = s.cases.iter().position(|c| {
                let p = cel::Program::compile(&c.condition).unwrap();
                match p.execute(&ctx) {
                    Ok(cel::Value::Bool(b)) => b,
                    other => panic!("{}: `{}` gave {other:?}", self.wf.name, c.condition),
                }
            });
            choices.insert(n, chosen.unwrap_or(s.cases.len()) as u32);
        }
        choices
    }

    /// The executed tasks are exactly `Workflow::runs` for the choices the conditions make.
    fn check_runs(&self) {
        let runs = self.wf.runs(&self.expected_choices());
        let expected: HashSet<NodeId> = self
            .wf
            .graph
            .node_indices()
            .filter(|&n| runs[n.index()] && !self.wf.graph[n].is_virtual())
            .filter(|&n| !self.in_empty_foreach(n))
            .collect();
        assert_eq!(self.executed_tasks(), expected, "{}", self.wf.name);
    }

    fn in_empty_foreach(&self, _n: NodeId) -> bool {
        self.behaviour.width == 0 && self.wf.graph[_n].scope.is_some()
    }
}

fn fixtures() -> Vec<Workflow> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/faasflow-v1");
    let mut files = Vec::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| matches!(n, "flat_workflow.yaml" | "workflow.yaml" | "workflow2.yaml"))
            {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 15, "fixtures missing: {files:?}");
    let mut wfs: Vec<Workflow> = files
        .iter()
        .map(|p| {
            faasflow_planner::load::load_file(p)
                .unwrap_or_else(|e| panic!("{e}"))
                .workflow
        })
        .collect();
    let doc = include_str!("../../docs/wdl.md");
    for (i, block) in doc.split("```yaml\n").skip(1).enumerate() {
        let src = block.split("```").next().unwrap();
        let l = faasflow_planner::load::load_str(src, &format!("docs/wdl.md example {}", i + 1), "example").unwrap();
        wfs.push(l.workflow);
    }
    wfs
}

fn load(src: &str) -> Workflow {
    faasflow_planner::load::load_str(src, "test.yaml", "test")
        .unwrap()
        .workflow
}

#[test]
fn every_fixture_and_doc_example_runs_as_the_reference_says() {
    let (mut workflows, mut branching, mut followed) = (0, 0, 0);
    for wf in fixtures() {
        workflows += 1;
        let mut executed = HashSet::new();
        for flag in [true, false] {
            for width in [0, 3] {
                let name = wf.name.clone();
                let b = Behaviour {
                    flag: flag.into(),
                    width,
                    ..Behaviour::default()
                };
                let mut sim = Sim::new(wf.clone(), 1, b);
                let input = sim.default_input();
                sim.run(input);
                match sim.finished.as_ref().unwrap() {
                    Ok(_) => {}
                    Err(e) => panic!("{name} (flag {flag}, width {width}): {e}"),
                }
                sim.check_runs();
                followed += sim.followed;
                executed.insert(format!("{:?}", {
                    let mut v: Vec<_> = sim.executed_tasks().into_iter().collect();
                    v.sort();
                    v
                }));
            }
        }
        // Different switch choices or widths gave different runs.
        branching += usize::from(executed.len() > 1);
    }
    assert!(workflows >= 26, "{workflows} workflows");
    // Workflows with a switch or a foreach whose runs depend on the flag or the width.
    assert!(branching >= 8, "only {branching} workflows took more than one path");
    // Completions whose follower was foreseen, and came as foreseen.
    assert!(followed >= 50, "only {followed} followers foreseen");
}

/// Which successor may follow a running task on its thread, and which may not.
#[test]
fn a_follower_is_a_task_waiting_for_the_running_one_alone_and_reading_only_its_outputs() {
    let src = "name: f
inputs: {text: bytes}
functions:
  a: {outputs: {out: bytes}}
  b: {outputs: {out: bytes}}
  c: {}
  d: {}
  e: {}
steps:
  - task: a
  - task: b
    inputs: {x: a.out}
  - parallel:
      - task: c
        inputs: {y: b.out}
      - task: d
        inputs: {t: input.text}
  - task: e
";
    let wf = Arc::new(load(src));
    let id = |n: &str| wf.graph.node_indices().find(|&i| wf.graph[i].name == n).unwrap();
    let mut engine = Engine::new(EngineConfig { seed: 1 });
    engine
        .install(wf.clone(), 1, wf.graph.node_indices().collect())
        .unwrap();
    engine
        .start(Duration::ZERO, "f", 1, 1, serde_json::json!({"text": "t"}))
        .unwrap();
    let obj = |id| ObjectRef { id, len: 1, json: None };
    // a → b: b reads a's output alone.
    let f = engine.follower(1, id("a"), None).expect("b follows a");
    assert_eq!(f.node, id("b"));
    assert_eq!(f.inputs, [("x".to_owned(), "out".to_owned())]);
    // b is not running yet: nothing follows it.
    assert_eq!(engine.follower(1, id("b"), None), None);
    engine.function_done(Duration::ZERO, 1, id("a"), None, vec![("out".into(), obj(1))]);
    // b → {c, d}: c reads b's output; d reads a workflow input, not b's outputs.
    let f = engine.follower(1, id("b"), None).expect("c follows b");
    assert_eq!(f.node, id("c"));
    engine.function_done(Duration::ZERO, 1, id("b"), None, vec![("out".into(), obj(2))]);
    // c → e: e waits for d too.
    assert_eq!(engine.follower(1, id("c"), None), None);
    engine.function_done(Duration::ZERO, 1, id("c"), None, vec![]);
    // d → e: e waits for d alone now, and reads nothing.
    let f = engine.follower(1, id("d"), None).expect("e follows d once c is done");
    assert_eq!((f.node, f.inputs.len()), (id("e"), 0));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn completion_order_does_not_change_the_outcome(seed in any::<u64>(), flag in any::<bool>()) {
        for wf in fixtures() {
            let b = Behaviour { flag: flag.into(), ..Behaviour::default() };
            let mut a = Sim::new(wf.clone(), 1, b.clone());
            let input = a.default_input();
            a.run(input.clone());
            let mut r = Sim::new(wf.clone(), seed, b);
            r.run(input);
            prop_assert_eq!(a.executed_tasks(), r.executed_tasks());
            let shape = |s: &Sim| match s.finished.as_ref().unwrap() {
                Ok(v) => Ok(v.iter().map(|(n, v)| (n.clone(), match v {
                    InputValue::List(l) => format!("list {}", l.len()),
                    InputValue::Object(_) => "object".to_owned(),
                    other => format!("{other:?}"),
                })).collect::<Vec<_>>()),
                Err(e) => Err(e.clone()),
            };
            prop_assert_eq!(shape(&a), shape(&r));
        }
    }
}

const FOREACH: &str = r#"
name: fe
inputs:
  items: list
functions:
  prep: {outputs: {p: bytes}}
  work: {outputs: {out: bytes}}
  post: {outputs: {res: bytes}}
  merge: {outputs: {all: bytes}}
steps:
  - task: prep
  - foreach:
      over: input.items
      max_concurrency: 2
      do:
        - task: work
          inputs: {item: each.item, i: each.index, p: prep.p}
        - task: post
          inputs: {x: work.out}
  - task: merge
    inputs: {parts: post.res, works: work.out}
output:
  all: merge.all
  parts: post.res
"#;

#[test]
fn foreach_respects_max_concurrency_and_order() {
    for seed in 1..20 {
        let mut sim = Sim::new(load(FOREACH), seed, Behaviour::default());
        sim.run(serde_json::json!({"items": ["a", "b", "c", "d", "e", "f", "g"]}));
        let Some(Ok(result)) = sim.finished.clone() else {
            panic!("{:?}", sim.finished)
        };
        let f = sim.wf.node_by_name("work").and_then(|w| sim.wf.graph[w].scope).unwrap();
        assert_eq!(sim.max_in_flight[&f], 2);
        let work = sim.wf.node_by_name("work").unwrap();
        let items: Vec<_> = sim
            .triggers
            .iter()
            .filter(|t| t.0.0 == work)
            .map(|t| (t.0.1.unwrap(), t.3.clone()))
            .collect();
        assert_eq!(items.len(), 7);
        // The first two start together, in element order.
        assert_eq!(items[0].0, 0, "{items:?}");
        assert_eq!(items[1].0, 1, "{items:?}");
        for (e, inputs) in items {
            let item = ["a", "b", "c", "d", "e", "f", "g"][e as usize];
            assert!(inputs.contains(&("item".to_owned(), InputValue::Json(std::sync::Arc::new(item.into())))));
            assert!(inputs.contains(&("i".to_owned(), InputValue::Json(std::sync::Arc::new(e.into())))));
        }
        let merge = sim
            .triggers
            .iter()
            .find(|t| t.0.0 == sim.wf.node_by_name("merge").unwrap())
            .unwrap();
        assert!(matches!(&merge.3[0].1, InputValue::List(l) if l.len() == 7));
        assert!(matches!(&result[1].1, InputValue::List(l) if l.len() == 7));
    }
}

#[test]
fn empty_foreach_gives_empty_lists() {
    let mut sim = Sim::new(load(FOREACH), 3, Behaviour::default());
    sim.run(serde_json::json!({"items": []}));
    let Some(Ok(result)) = sim.finished.clone() else {
        panic!("{:?}", sim.finished)
    };
    assert_eq!(result[1].1, InputValue::List(vec![]));
    let merge = sim
        .triggers
        .iter()
        .find(|t| t.0.0 == sim.wf.node_by_name("merge").unwrap())
        .unwrap();
    assert_eq!(merge.3[0].1, InputValue::List(vec![]));
}

#[test]
fn foreach_over_a_non_list_fails() {
    let mut sim = Sim::new(load(FOREACH), 3, Behaviour::default());
    sim.run(serde_json::json!({"items": 5}));
    let err = sim.finished.clone().unwrap().unwrap_err();
    assert!(err.contains("needs a JSON list") && err.contains("a number"), "{err}");
}

const RETRY: &str = r#"
name: retry
functions:
  a: {timeout: 1s, retry: {attempts: 3, backoff: 100ms}, outputs: {x: bytes}}
  b: {outputs: {y: bytes}}
  slow: {}
steps:
  - task: a
  - parallel:
      - task: b
        inputs: {x: a.x}
      - task: slow
        inputs: {x: a.x}
output:
  y: b.y
"#;

fn fail(name: &str, attempts: u32, hang: bool) -> Behaviour {
    Behaviour {
        fail: [(name.to_owned(), (attempts, hang))].into_iter().collect(),
        ..Behaviour::default()
    }
}

#[test]
fn retries_back_off_and_succeed() {
    let mut sim = Sim::new(load(RETRY), 1, fail("a", 2, false));
    sim.run(serde_json::json!({}));
    assert!(matches!(sim.finished, Some(Ok(_))), "{:?}", sim.finished);
    let a = sim.wf.node_by_name("a").unwrap();
    let times: Vec<_> = sim.triggers.iter().filter(|t| t.0.0 == a).map(|t| (t.1, t.2)).collect();
    assert_eq!(times.len(), 3);
    assert_eq!(times[1].1 - times[0].1, Duration::from_millis(101)); // 1 ms run + 100 ms
    assert_eq!(times[2].1 - times[1].1, Duration::from_millis(201)); // doubled
}

#[test]
fn timeouts_cancel_and_retry_then_fail() {
    let mut sim = Sim::new(load(RETRY), 1, fail("a", 1, true));
    sim.run(serde_json::json!({}));
    assert!(matches!(sim.finished, Some(Ok(_))), "{:?}", sim.finished);
    assert_eq!(sim.cancels.len(), 1);

    let mut sim = Sim::new(load(RETRY), 1, fail("a", 9, true));
    sim.run(serde_json::json!({}));
    let err = sim.finished.clone().unwrap().unwrap_err();
    assert_eq!(err, "step `a` failed after 3 attempts: timed out after 1000 ms");
    assert_eq!(sim.cancels.len(), 3);
}

#[test]
fn only_the_kinds_of_failure_in_retry_on_are_retried() {
    let src = RETRY.replace("backoff: 100ms}", "backoff: 100ms, on: [crash, timeout]}");
    // A crash is retried (and the third attempt succeeds)…
    let crash = Behaviour {
        kind: FailureKind::Crash,
        ..fail("a", 2, false)
    };
    let mut sim = Sim::new(load(&src), 1, crash);
    sim.run(serde_json::json!({}));
    assert!(matches!(sim.finished, Some(Ok(_))), "{:?}", sim.finished);
    // …an error is not: the first attempt fails the step, and the message says why.
    let mut sim = Sim::new(load(&src), 1, fail("a", 2, false));
    sim.run(serde_json::json!({}));
    let err = sim.finished.clone().unwrap().unwrap_err();
    assert_eq!(
        err,
        "step `a` failed: boom 1 (not retried: a failure of kind `error`, and `retry.on` is [crash, timeout])"
    );
    let a = sim.wf.node_by_name("a").unwrap();
    assert_eq!(sim.triggers.iter().filter(|t| t.0.0 == a).count(), 1);
    // Timeouts are in the list: a hang is retried.
    let mut sim = Sim::new(load(&src), 1, fail("a", 1, true));
    sim.run(serde_json::json!({}));
    assert!(matches!(sim.finished, Some(Ok(_))), "{:?}", sim.finished);
}

/// An engine running invocation 1 of `RETRY` (every task local), and the node of task `a`.
fn retry_started() -> (NodeId, Engine) {
    let wf = Arc::new(load(RETRY));
    let a = wf.node_by_name("a").unwrap();
    let mut engine = Engine::new(EngineConfig::default());
    engine
        .install(wf.clone(), 1, wf.graph.node_indices().collect())
        .unwrap();
    engine
        .start(Duration::ZERO, "retry", 1, 1, serde_json::json!({}))
        .unwrap();
    (a, engine)
}

#[test]
fn the_invocation_deadline_cancels_what_runs_and_names_it() {
    let (a, mut engine) = retry_started();
    engine.set_deadline(1, Duration::from_millis(250), 250);
    assert!(matches!(engine.poll_action(), Some(Action::Trigger { attempt: 1, .. })));
    // The first attempt fails; the retry waits 100 ms and runs; the deadline passes first.
    engine.function_failed(Duration::from_millis(10), 1, a, None, "boom".into(), FailureKind::Crash);
    assert_eq!(engine.poll_action(), None);
    assert_eq!(engine.poll_timeout(), Some(Duration::from_millis(110)));
    engine.tick(Duration::from_millis(110));
    assert!(matches!(engine.poll_action(), Some(Action::Trigger { attempt: 2, .. })));
    assert_eq!(engine.poll_timeout(), Some(Duration::from_millis(250)));
    engine.tick(Duration::from_millis(250));
    assert_eq!(
        engine.poll_action(),
        Some(Action::Cancel {
            invocation: 1,
            node: a,
            element: None,
            timed_out: true
        })
    );
    match engine.poll_action() {
        Some(Action::Finished { invocation: 1, result }) => assert_eq!(
            result.unwrap_err().to_string(),
            "the invocation did not end within its deadline of 250 ms; still open: `a`: attempt 2 running"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(engine.poll_action(), None);
    assert_eq!(engine.invocations_in_flight(), 0);
    assert_eq!(
        engine.timers_pending(),
        0,
        "the attempt's timeout and the deadline are gone"
    );
    // An invocation that ends in time leaves no deadline timer behind.
    let mut sim = Sim::new(load(RETRY), 1, Behaviour::default());
    sim.engine
        .start(Duration::ZERO, "retry", 1, 8, serde_json::json!({}))
        .unwrap();
    sim.engine.set_deadline(8, Duration::from_secs(60), 60_000);
    assert_eq!(sim.engine.timers_pending(), 2, "a's timeout and the deadline");
    sim.engine.abort(8, "stop".into());
    assert_eq!(sim.engine.timers_pending(), 0);
}

#[test]
fn failure_in_a_branch_fails_and_releases_everything() {
    let mut sim = Sim::new(load(RETRY), 5, fail("slow", 1, false));
    sim.run(serde_json::json!({}));
    let err = sim.finished.clone().unwrap().unwrap_err();
    assert_eq!(err, "step `slow` failed: boom 1");
}

#[test]
fn failure_in_a_foreach_element_names_it() {
    let mut sim = Sim::new(load(FOREACH), 5, fail("post", 1, false));
    sim.run(serde_json::json!({"items": [1, 2, 3]}));
    let err = sim.finished.clone().unwrap().unwrap_err();
    assert!(err.starts_with("step `post` (element "), "{err}");
}

#[test]
fn jitter_is_seeded() {
    let src = RETRY.replace("backoff: 100ms}", "backoff: 100ms, jitter: 0.5}");
    let waits = |seed| {
        let mut sim = Sim::new(load(&src), seed, fail("a", 1, false));
        sim.run(serde_json::json!({}));
        let a = sim.wf.node_by_name("a").unwrap();
        let t: Vec<_> = sim.triggers.iter().filter(|t| t.0.0 == a).map(|t| t.2).collect();
        t[1] - t[0]
    };
    assert_eq!(waits(1), waits(1));
    let w = waits(2);
    assert!(
        w >= Duration::from_millis(51) && w <= Duration::from_millis(151),
        "{w:?}"
    );
}

#[test]
fn a_condition_that_errors_fails_the_invocation() {
    let src = r#"
name: bad
functions:
  a: {outputs: {v: json}}
  b: {}
steps:
  - task: a
  - switch:
      name: pick
      cases:
        - if: a.v > 3
          then: [{task: b}]
      default: []
"#;
    let b = Behaviour {
        flag: "text".into(),
        ..Behaviour::default()
    };
    let mut sim = Sim::new(load(src), 1, b);
    sim.run(serde_json::json!({}));
    let err = sim.finished.clone().unwrap().unwrap_err();
    assert!(
        err.starts_with("switch `pick` failed: condition `a.v > 3` could not be evaluated"),
        "{err}"
    );

    let b = Behaviour {
        flag: 5.into(),
        ..Behaviour::default()
    };
    let mut sim = Sim::new(load(src), 1, b);
    sim.run(serde_json::json!({}));
    assert!(matches!(sim.finished, Some(Ok(_))));
    assert!(sim.executed_tasks().contains(&sim.wf.node_by_name("b").unwrap()));
}

#[test]
fn switch_choices_follow_the_conditions() {
    let doc = include_str!("../../docs/wdl.md");
    let src = doc
        .split("```yaml\n")
        .find(|b| b.starts_with("name: switch-example"))
        .unwrap();
    let src = src.split("```").next().unwrap();
    for (x, y, ran, skipped) in [(1, 2, "invalid", "sqrt"), (5, 2, "sqrt", "invalid")] {
        let mut sim = Sim::new(load(src), 1, Behaviour::default());
        sim.run(serde_json::json!({"x": x, "y": y}));
        let Some(Ok(result)) = sim.finished.clone() else {
            panic!()
        };
        let names: HashSet<_> = sim
            .executed_tasks()
            .iter()
            .map(|&n| sim.wf.graph[n].name.clone())
            .collect();
        assert!(names.contains(ran) && !names.contains(skipped), "{names:?}");
        assert!(matches!(result[0].1, InputValue::Object(_)));
    }
}

#[test]
fn missing_inputs_are_named() {
    let mut engine = Engine::new(EngineConfig::default());
    let wf = Arc::new(load(FOREACH));
    engine
        .install(wf.clone(), 1, wf.graph.node_indices().collect())
        .unwrap();
    let err = engine
        .start(Duration::ZERO, "fe", 1, 1, serde_json::json!({}))
        .unwrap_err();
    assert_eq!(
        err,
        EngineError::MissingInputs {
            workflow: "fe".into(),
            names: vec!["items".into()]
        }
    );
    assert!(err.to_string().contains("items"));
    assert_eq!(engine.invocations_in_flight(), 0);
    let err = engine
        .start(Duration::ZERO, "nope", 1, 1, serde_json::json!({}))
        .unwrap_err();
    assert!(matches!(err, EngineError::UnknownWorkflow { .. }));
}

#[test]
fn max_concurrency_zero_is_unlimited() {
    let src = FOREACH.replace("max_concurrency: 2", "max_concurrency: 0");
    let mut sim = Sim::new(load(&src), 1, Behaviour::default());
    sim.run(serde_json::json!({"items": [1, 2, 3, 4, 5, 6]}));
    assert!(matches!(sim.finished, Some(Ok(_))));
    let f = sim.wf.node_by_name("work").and_then(|w| sim.wf.graph[w].scope).unwrap();
    assert_eq!(sim.max_in_flight[&f], 6);
}

#[test]
fn other_branches_are_cancelled_when_one_fails() {
    for seed in 1..10 {
        let mut sim = Sim::new(load(RETRY), seed, fail("slow", 1, false));
        sim.run(serde_json::json!({}));
        assert!(sim.finished.clone().unwrap().is_err());
        let b = (sim.wf.node_by_name("b").unwrap(), None);
        assert!(sim.completed.contains_key(&b) || sim.cancels.contains(&b));
    }
}

#[test]
fn a_completion_arriving_during_backoff_is_dropped_and_released() {
    let (a, mut engine) = retry_started();
    assert!(matches!(engine.poll_action(), Some(Action::Trigger { attempt: 1, .. })));
    assert_eq!(engine.poll_timeout(), Some(Duration::from_secs(1)));
    engine.tick(Duration::from_secs(1));
    assert!(matches!(engine.poll_action(), Some(Action::Cancel { .. })));
    assert_eq!(engine.poll_action(), None);
    // The timed-out attempt answers late, while the retry waits.
    let late = ObjectRef {
        id: 99,
        len: 1,
        json: None,
    };
    engine.function_done(Duration::from_millis(1050), 1, a, None, vec![("x".into(), late)]);
    assert_eq!(engine.poll_action(), Some(Action::Release { object: 99 }));
    assert_eq!(engine.poll_timeout(), Some(Duration::from_millis(1100)));
    engine.tick(Duration::from_millis(1100));
    assert!(matches!(engine.poll_action(), Some(Action::Trigger { attempt: 2, .. })));
    assert_eq!(engine.invocations_in_flight(), 1);
}

#[test]
fn nested_foreach_is_refused_at_install() {
    let src = r#"
name: nested
inputs:
  rows: list
functions:
  cell: {}
steps:
  - foreach:
      name: row
      over: input.rows
      do:
        - foreach:
            name: col
            over: row.item
            do:
              - task: cell
                inputs: {v: col.item}
"#;
    let wf = Arc::new(load(src));
    let mut engine = Engine::new(EngineConfig::default());
    let err = engine
        .install(wf.clone(), 1, wf.graph.node_indices().collect())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "workflow `nested` cannot run on this engine: foreach `col` is nested in foreach `row`"
    );
}

#[test]
fn a_timed_out_element_is_retried_alone() {
    let src = FOREACH.replace(
        "  post: {outputs: {res: bytes}}",
        "  post: {timeout: 2s, retry: 2, outputs: {res: bytes}}",
    );
    let mut sim = Sim::new(load(&src), 4, fail("post", 1, true));
    sim.run(serde_json::json!({"items": [1, 2, 3]}));
    assert!(matches!(sim.finished, Some(Ok(_))), "{:?}", sim.finished);
    let post = sim.wf.node_by_name("post").unwrap();
    let mut attempts: Vec<_> = sim
        .triggers
        .iter()
        .filter(|t| t.0.0 == post)
        .map(|t| (t.0.1, t.1))
        .collect();
    attempts.sort();
    let expected: Vec<_> = (0..3).flat_map(|e| [(Some(e), 1), (Some(e), 2)]).collect();
    assert_eq!(attempts, expected);
    assert_eq!(sim.cancels.len(), 3);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// Random DAGs (the planner's generator) in a random completion order: every task runs
    /// once, after its predecessors, and every object is released once.
    #[test]
    fn random_dags_run_every_task_once(wf_seed in any::<u64>(), seed in any::<u64>(), tasks in 1usize..80) {
        let params = faasflow_planner::GenParams { tasks, ..Default::default() };
        let wf = faasflow_planner::random_workflow(wf_seed, &params);
        let mut sim = Sim::new(wf, seed, Behaviour::default());
        let input = sim.default_input();
        sim.run(input);
        prop_assert!(matches!(sim.finished, Some(Ok(_))), "{:?}", sim.finished);
        prop_assert_eq!(sim.executed_tasks().len(), sim.wf.task_count());
        prop_assert_eq!(sim.triggers.len(), sim.wf.task_count());
        prop_assert!(sim.next_obj > 1);
    }
}

/// Engines of several workers, each running the tasks assigned to it and told of the others'
/// completions (in any order, after any delay), agree: every task instance runs once, on its
/// worker; every engine ends with the same result; every object each engine was told of is
/// released by it exactly once.
fn run_replicated(wf: Workflow, workers: u32, seed: u64) {
    let wf = Arc::new(wf);
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let owner: HashMap<NodeId, u32> = wf
        .graph
        .node_indices()
        .map(|n| (n, (next() % u64::from(workers)) as u32))
        .collect();
    let mut engines: Vec<Engine> = (0..workers)
        .map(|w| {
            let mut e = Engine::new(EngineConfig { seed });
            let local = owner.iter().filter(|(_, o)| **o == w).map(|(n, _)| *n).collect();
            e.install(wf.clone(), 1, local).unwrap();
            e
        })
        .collect();
    let mut input = serde_json::Map::new();
    for i in &wf.inputs {
        let v = match i.kind {
            ValueKind::List => serde_json::json!([0, 1, 2]),
            ValueKind::Json => serde_json::json!(true),
            ValueKind::Bytes => serde_json::json!("x"),
        };
        input.insert(i.name.clone(), v);
    }
    for e in &mut engines {
        e.start(Duration::ZERO, &wf.name, 1, 1, serde_json::Value::Object(input.clone()))
            .unwrap();
    }
    // Completions in flight: (worker it is for, event).
    let mut mail: Vec<(usize, Event)> = Vec::new();
    // Local completions to make: (worker, node, element, outputs).
    let mut running: Vec<(usize, NodeId, Option<u32>)> = Vec::new();
    let mut triggered: HashMap<(NodeId, Option<u32>), u32> = HashMap::new();
    let mut told: Vec<HashSet<u64>> = vec![HashSet::new(); workers as usize];
    let mut released: Vec<Vec<u64>> = vec![Vec::new(); workers as usize];
    type Outcome = Option<Result<Vec<(String, InputValue)>, String>>;
    let mut results: Vec<Outcome> = vec![None; workers as usize];
    let mut next_obj = 1u64;
    loop {
        for (w, e) in engines.iter_mut().enumerate() {
            while let Some(a) = e.poll_action() {
                match a {
                    Action::Trigger { node, element, .. } => {
                        assert_eq!(
                            owner[&node], w as u32,
                            "`{}` triggered off its worker",
                            wf.graph[node].name
                        );
                        *triggered.entry((node, element)).or_default() += 1;
                        running.push((w, node, element));
                    }
                    Action::Release { object } => released[w].push(object),
                    Action::Finished { result, .. } => {
                        assert!(results[w].is_none(), "worker {w} finished twice");
                        results[w] = Some(result.map_err(|e| e.to_string()));
                    }
                    Action::Cancel { .. } => {}
                    Action::Caught { .. } => panic!("no task fails in this run"),
                }
            }
        }
        if mail.is_empty() && running.is_empty() {
            break;
        }
        // Either a function ends, or a message is delivered: chosen at random.
        let pick = next() as usize % (mail.len() + running.len());
        if pick < running.len() {
            let (w, node, element) = running.swap_remove(pick);
            let task = wf.graph[node].task().unwrap();
            let outputs: Vec<(String, ObjectRef)> = task
                .spec
                .outputs
                .iter()
                .map(|o| {
                    next_obj += 1;
                    let json = match o.kind {
                        ValueKind::Json => Some(Arc::new(serde_json::json!(true))),
                        ValueKind::List => Some(Arc::new(serde_json::json!([0, 1]))),
                        ValueKind::Bytes => None,
                    };
                    (
                        o.name.clone(),
                        ObjectRef {
                            id: next_obj,
                            len: 1,
                            json,
                        },
                    )
                })
                .collect();
            for to in 0..engines.len() {
                for (_, o) in &outputs {
                    told[to].insert(o.id);
                }
                let ev = Event::FunctionDone {
                    invocation: 1,
                    node,
                    element,
                    outputs: outputs.clone(),
                };
                if to == w {
                    engines[to].handle(Duration::ZERO, ev);
                } else {
                    mail.push((to, ev));
                }
            }
        } else {
            let (to, ev) = mail.swap_remove(pick - running.len());
            engines[to].handle(Duration::ZERO, ev);
        }
    }
    for (k, n) in &triggered {
        assert_eq!(*n, 1, "`{}` element {:?} ran {n} times", wf.graph[k.0].name, k.1);
    }
    let first = results[0].clone().unwrap_or_else(|| {
        panic!(
            "`{}` seed {seed}: worker 0 did not finish; results {results:?}; triggered {triggered:?}",
            wf.name
        )
    });
    for (w, r) in results.iter().enumerate() {
        assert_eq!(r.as_ref(), Some(&first), "worker {w} ended otherwise than worker 0");
        let mut rel = released[w].clone();
        rel.sort_unstable();
        let before = rel.len();
        rel.dedup();
        assert_eq!(before, rel.len(), "worker {w} released an object twice");
        let mut t: Vec<u64> = told[w].iter().copied().collect();
        t.sort_unstable();
        assert_eq!(rel, t, "worker {w} did not release exactly what it was told of");
        assert_eq!(engines[w].objects_held(), 0);
        assert_eq!(engines[w].invocations_in_flight(), 0);
    }
}

#[test]
fn engines_of_several_workers_agree_on_every_fixture() {
    for wf in fixtures() {
        for seed in 1..=8 {
            run_replicated(wf.clone(), 3, seed);
        }
    }
}

#[test]
fn abort_ends_an_invocation_and_releases_everything() {
    let wf = Arc::new(load(FOREACH));
    let mut e = Engine::new(EngineConfig::default());
    e.install(wf.clone(), 1, HashSet::new()).unwrap();
    e.start(Duration::ZERO, &wf.name, 1, 9, serde_json::json!({"items": [1, 2]}))
        .unwrap();
    // Nothing is local: nothing is triggered.
    while let Some(a) = e.poll_action() {
        assert!(!matches!(a, Action::Trigger { .. }), "{a:?}");
    }
    assert!(e.is_running(9));
    e.abort(9, "worker `w2` was lost".into());
    let mut finished = None;
    while let Some(a) = e.poll_action() {
        if let Action::Finished { result, .. } = a {
            finished = Some(result);
        }
    }
    assert_eq!(finished, Some(Err(Failure::Aborted("worker `w2` was lost".into()))));
    assert!(!e.is_running(9));
    assert_eq!(e.objects_held(), 0);
    assert_eq!(e.timers_pending(), 0);
}

const CATCH: &str = r#"
name: caught
functions:
  a: {retry: {attempts: 2, backoff: 10ms}, outputs: {x: bytes, n: json}}
  fallback: {outputs: {x: bytes, n: json}}
  b: {outputs: {y: bytes}}
steps:
  - task: a
    catch: fallback
  - switch:
      cases:
        - if: a.n == true
          then:
            - task: b
              inputs: {x: a.x}
      default: []
output:
  x: a.x
  y: b.y
"#;

#[test]
fn a_caught_task_runs_its_catch_step_with_the_failure_and_the_rest_reads_its_outputs() {
    let mut sim = Sim::new(load(CATCH), 1, fail("a", 9, false));
    sim.run(serde_json::json!({}));
    let outputs = sim
        .finished
        .clone()
        .unwrap()
        .expect("the catch step saved the invocation");
    let (a, fallback, b) = (
        sim.wf.node_by_name("a").unwrap(),
        sim.wf.node_by_name("fallback").unwrap(),
        sim.wf.node_by_name("b").unwrap(),
    );
    assert_eq!(
        sim.triggers.iter().filter(|t| t.0.0 == a).count(),
        2,
        "both attempts ran"
    );
    let (_, _, _, inputs) = sim
        .triggers
        .iter()
        .find(|t| t.0.0 == fallback)
        .expect("the catch step ran");
    assert_eq!(
        inputs,
        &vec![(
            "error".to_owned(),
            InputValue::Json(Arc::new(serde_json::json!({
                "step": "a", "element": null, "error": "boom 2", "kind": "error", "attempts": 2
            })))
        )]
    );
    // The switch read `a.n` from the catch step, and `b` read its `x`.
    let (_, _, _, b_inputs) = sim.triggers.iter().find(|t| t.0.0 == b).expect("b ran");
    let InputValue::Object(x) = &b_inputs[0].1 else {
        panic!("{b_inputs:?}")
    };
    assert_eq!(sim.live_or_released_producer(x.id), fallback);
    let (name, InputValue::Object(o)) = &outputs[0] else {
        panic!("{outputs:?}")
    };
    assert_eq!(name, "x");
    assert_eq!(sim.live_or_released_producer(o.id), fallback);
}

#[test]
fn a_task_that_succeeds_skips_its_catch_step() {
    let mut sim = Sim::new(load(CATCH), 1, Behaviour::default());
    sim.run(serde_json::json!({}));
    assert!(matches!(sim.finished, Some(Ok(_))), "{:?}", sim.finished);
    let fallback = sim.wf.node_by_name("fallback").unwrap();
    assert!(!sim.triggers.iter().any(|t| t.0.0 == fallback));
    // Without failures the reference (`Workflow::runs`) agrees: the catch step does not run.
    let runs = sim.wf.runs(&Default::default());
    assert!(!runs[fallback.index()]);
}

#[test]
fn a_failing_catch_step_fails_the_invocation_with_its_error() {
    let mut sim = Sim::new(load(CATCH), 1, {
        let mut b = fail("a", 9, false);
        b.fail.insert("fallback".into(), (9, false));
        b
    });
    sim.run(serde_json::json!({}));
    assert_eq!(
        sim.finished.clone().unwrap().unwrap_err(),
        "step `fallback` failed: boom 1"
    );
}

#[test]
fn result_reads_are_the_task_outputs_the_workflow_output_names() {
    let wf = load(
        "name: r\nfunctions:\n  a: {outputs: {x: bytes, y: bytes}}\n  b: {outputs: {z: bytes}}\n\
         steps:\n  - task: a\n    inputs: {in: input.text}\n  - task: b\n    inputs: {in: a.x}\n\
         output:\n  first: a.y\n  last: b.z\n  echo: input.text\n",
    );
    let a = wf.node_by_name("a").expect("a").index() as u32;
    let b = wf.node_by_name("b").expect("b").index() as u32;
    let expected: HashSet<(u32, String)> = [(a, "y".to_owned()), (b, "z".to_owned())].into_iter().collect();
    // `a.x` is read by `b` only, and `input.text` is no task's output.
    assert_eq!(wf.result_reads(), expected);
}
