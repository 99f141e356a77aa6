//! A cluster in one process, on a virtual clock: the control plane's registry and version
//! faults (the real ones), the real partitioner, and one real engine per worker, joined by a
//! simulated network with latency, reordering and lost heartbeats. No sockets and no sleeps,
//! so multi-worker logic is tested without timing flakes (quinn-proto's `Pair` is the model).
//!
//! What the simulation does for the parts that are I/O in the real system:
//! - a worker sends a heartbeat every interval (some are lost); the control plane looks over
//!   the registry every interval and asks the silent workers directly (a crashed one never
//!   answers, after a probe timeout);
//! - a worker found lost is told to the others, whose engines abort the invocations that
//!   involve it (as daemons do on `WorkerLost`);
//! - a version with a fault is planned again onto the live workers and installed on them,
//!   which report it in their next heartbeats;
//! - invocations start on every worker of the newest version that has no fault; a function
//!   runs for a few virtual milliseconds; its completion reaches the other workers after a
//!   random latency (in any order).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faasflow_core::dag::{ValueKind, Workflow};
use faasflow_core::engine::{Action, Engine, EngineConfig, Event, ObjectRef};
use faasflow_core::plan::{ClusterView, Mode, WorkerView};
use faasflow_core::{NodeId, PlannerConfig};
use faasflow_planner::load::load_str;
use faasflow_planner::partition;
use faasflow_rpc::convert::WirePlan;

use crate::registry::{HeldPlan, Registry};
use crate::versions::{Deployed, Fault, Version, newest_fault, version_fault};

const INTERVAL: Duration = Duration::from_millis(100);
const STEP: Duration = Duration::from_millis(1);
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// A chain and a fan-out over three workers of one slot each, so every plan spans workers.
const WORKFLOW: &str = "
name: sim
functions:
  a: {runtime: 2ms, outputs: {out: {type: bytes, size: 1KB}}}
  b: {runtime: 2ms, outputs: {out: {type: bytes, size: 1KB}}}
  c: {runtime: 2ms, outputs: {out: {type: bytes, size: 1KB}}}
  d: {runtime: 2ms}
steps:
  - task: a
  - parallel:
      - task: b
        inputs: {x: a.out}
      - task: c
        inputs: {x: a.out}
  - task: d
    inputs: {x: b.out, y: c.out}
";

/// What travels between the simulated processes.
#[derive(Debug)]
enum Msg {
    Heartbeat {
        from: usize,
    },
    /// A worker's answer to a direct call.
    Answer {
        from: usize,
    },
    /// A direct call that got no answer in time.
    NoAnswer {
        to: usize,
    },
    Install {
        to: usize,
        version: u64,
    },
    Start {
        to: usize,
        version: u64,
        invocation: u64,
    },
    Event {
        to: usize,
        event: Event,
    },
    /// A function attempt on `to` ends.
    Ran {
        to: usize,
        node: NodeId,
        element: Option<u32>,
        invocation: u64,
    },
}

struct Worker {
    name: String,
    alive: bool,
    engine: Engine,
    /// Versions installed here (what its heartbeats report).
    held: Vec<HeldPlan>,
    /// Invocations started here.
    started: HashSet<u64>,
    /// Completions from other workers of invocations not started here yet (the peer
    /// transport keeps them until the invocation is known, as a daemon does).
    early: Vec<Event>,
    /// Workers it was told are lost: invocations involving them fail at once.
    lost: HashSet<usize>,
}

/// How each worker's engine ended one invocation.
type Ends = BTreeMap<usize, Result<(), String>>;

struct Sim {
    rng: u64,
    clock: Duration,
    t0: Instant,
    /// Heartbeats lost, one in `loss`.
    loss: u64,
    queue: BinaryHeap<Reverse<(Duration, u64, usize)>>,
    msgs: HashMap<usize, Msg>,
    seq: u64,
    workers: Vec<Worker>,
    registry: Registry,
    deployed: Deployed,
    declared: Arc<Workflow>,
    /// The workers of each version, by index.
    members: BTreeMap<u64, Vec<usize>>,
    next_object: u64,
    /// Per invocation: its version, and how each worker's engine ended it.
    ended: BTreeMap<u64, (u64, Ends)>,
    /// When each worker was found lost.
    found_lost: BTreeMap<usize, Duration>,
    /// Triggers per (invocation, node, element): each runs once.
    triggered: HashMap<(u64, NodeId, Option<u32>), u32>,
}

impl Sim {
    fn new(seed: u64, loss: u64) -> Sim {
        let wf = Arc::new(load_str(WORKFLOW, "sim.yaml", "sim").expect("the workflow").workflow);
        let t0 = Instant::now();
        let mut registry = Registry::new(INTERVAL);
        let workers: Vec<Worker> = (0..3)
            .map(|i| Worker {
                name: format!("w{i}"),
                alive: true,
                engine: Engine::new(EngineConfig { seed }),
                held: Vec::new(),
                started: HashSet::new(),
                early: Vec::new(),
                lost: HashSet::new(),
            })
            .collect();
        for (i, w) in workers.iter().enumerate() {
            registry.join(&w.name, i as u64, addr(i), Some(addr(100 + i)), 1, vec![], t0);
        }
        let mut sim = Sim {
            rng: seed | 1,
            clock: Duration::ZERO,
            t0,
            loss,
            queue: BinaryHeap::new(),
            msgs: HashMap::new(),
            seq: 0,
            workers,
            registry,
            deployed: Deployed::default(),
            declared: wf,
            members: BTreeMap::new(),
            next_object: 0,
            ended: BTreeMap::new(),
            found_lost: BTreeMap::new(),
            triggered: HashMap::new(),
        };
        sim.deploy();
        sim
    }

    fn rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn now(&self) -> Instant {
        self.t0 + self.clock
    }

    /// Sends `msg` to arrive after `delay`.
    fn send(&mut self, delay: Duration, msg: Msg) {
        self.seq += 1;
        self.msgs.insert(self.seq as usize, msg);
        self.queue
            .push(Reverse((self.clock + delay, self.seq, self.seq as usize)));
    }

    /// A network latency: 1 to 30 ms.
    fn latency(&mut self) -> Duration {
        Duration::from_millis(1 + self.rand() % 30)
    }

    /// Plans the workflow for the live workers and installs the new version on them.
    fn deploy(&mut self) {
        let live: Vec<String> = self.registry.live().map(|(n, _)| n.clone()).collect();
        let cluster = ClusterView {
            workers: live
                .iter()
                .map(|n| WorkerView {
                    name: n.clone(),
                    slots: 1,
                })
                .collect(),
        };
        let cfg = PlannerConfig {
            allow_overcommit: true,
            ..PlannerConfig::default()
        };
        let wf = self.declared.clone();
        let plan = partition(&wf, &cluster, &cfg).expect("a plan");
        let wire = WirePlan::new(&wf, &plan, &cluster);
        self.deployed.last += 1;
        let version = self.deployed.last;
        let daemons: Vec<String> = live.clone();
        let members: Vec<usize> = daemons.iter().map(|n| self.index(n)).collect();
        for (at, &w) in members.iter().enumerate() {
            let local: HashSet<NodeId> = wf
                .graph
                .node_indices()
                .filter(|n| plan.worker_of(*n) as usize == at)
                .collect();
            self.workers[w]
                .engine
                .install(wf.clone(), version, local)
                .expect("the engine installs the plan");
        }
        let digest = wire.digest().to_vec();
        self.deployed.versions.insert(
            0,
            Version {
                version,
                wf: wf.clone(),
                plan,
                peers: daemons
                    .iter()
                    .map(|n| (n.clone(), self.registry.get(n).and_then(|w| w.quic_addr)))
                    .collect(),
                considered: daemons.iter().cloned().collect(),
                cluster,
                wire,
                daemons,
                digest: digest.clone(),
                in_flight: 0,
                mode: Mode::WorkerSp,
                allow_overcommit: true,
                declared: crate::versions::Declared::bare(&wf),
                planned_unix_ms: 0,
            },
        );
        self.members.insert(version, members.clone());
        for w in members {
            let delay = self.latency();
            self.send(delay, Msg::Install { to: w, version });
        }
        self.deployed.last_replan = Some(self.now());
    }

    fn index(&self, name: &str) -> usize {
        self.workers.iter().position(|w| w.name == name).expect("a worker")
    }

    /// One interval's work of the control plane: a look over the registry, direct calls to
    /// the silent workers, and a repair of a broken newest version.
    fn control(&mut self) {
        let now = self.now();
        let look = self.registry.look(now);
        for (name, _) in look.silent {
            let w = self.index(&name);
            if self.workers[w].alive {
                let delay = self.latency() * 2;
                self.send(delay, Msg::Answer { from: w });
            } else {
                self.send(PROBE_TIMEOUT, Msg::NoAnswer { to: w });
            }
        }
        if let Some(Fault::Broken(_)) = newest_fault(&self.registry, &self.deployed, now, false) {
            self.deploy();
        }
    }

    /// Starts an invocation on the newest version, when it can run.
    fn invoke(&mut self, invocation: u64) {
        let now = self.now();
        let v = &self.deployed.versions[0];
        if version_fault(&self.registry, v, now).is_some() {
            return;
        }
        let version = v.version;
        self.ended.insert(invocation, (version, BTreeMap::new()));
        for w in self.members[&version].clone() {
            let delay = self.latency();
            self.send(
                delay,
                Msg::Start {
                    to: w,
                    version,
                    invocation,
                },
            );
        }
    }

    fn deliver(&mut self, msg: Msg) {
        let now = self.now();
        match msg {
            Msg::Heartbeat { from } => {
                let w = &self.workers[from];
                self.registry.beat(&w.name, from as u64, w.held.clone(), now);
            }
            Msg::Answer { from } => {
                let name = self.workers[from].name.clone();
                self.registry.answered(&name, now);
            }
            Msg::NoAnswer { to } => {
                let name = self.workers[to].name.clone();
                if self.registry.unanswered(&name, now).is_some() {
                    self.found_lost.insert(to, self.clock);
                    self.tell_lost(to);
                }
            }
            Msg::Install { to, version } => {
                let digest = self
                    .deployed
                    .versions
                    .iter()
                    .find(|v| v.version == version)
                    .map(|v| v.digest.clone());
                if let (true, Some(digest)) = (self.workers[to].alive, digest) {
                    self.workers[to].held.push(HeldPlan {
                        workflow: "sim".into(),
                        version,
                        dropping: false,
                        digest,
                    });
                }
            }
            Msg::Start {
                to,
                version,
                invocation,
            } => {
                if self.workers[to].alive {
                    let clock = self.clock;
                    let w = &mut self.workers[to];
                    w.engine
                        .start(clock, "sim", version, invocation, serde_json::json!({}))
                        .expect("the invocation starts");
                    w.started.insert(invocation);
                    if let Some(&gone) = self.members[&version].iter().find(|m| w.lost.contains(m)) {
                        w.engine.abort(invocation, format!("worker `w{gone}` was lost"));
                    }
                    let (now, later): (Vec<Event>, Vec<Event>) = std::mem::take(&mut w.early)
                        .into_iter()
                        .partition(|e| invocation_of(e) == invocation);
                    w.early = later;
                    for e in now {
                        w.engine.handle(clock, e);
                    }
                }
            }
            Msg::Event { to, event } => {
                let clock = self.clock;
                let w = &mut self.workers[to];
                if !w.alive {
                } else if w.started.contains(&invocation_of(&event)) {
                    w.engine.handle(clock, event);
                } else {
                    w.early.push(event);
                }
            }
            Msg::Ran {
                to,
                node,
                element,
                invocation,
            } => self.ran(to, node, element, invocation),
        }
    }

    /// A function attempt on worker `w` ended: its engine and the other workers of the
    /// version learn of it.
    fn ran(&mut self, w: usize, node: NodeId, element: Option<u32>, invocation: u64) {
        if !self.workers[w].alive || !self.workers[w].engine.is_running(invocation) {
            return;
        }
        let version = self.ended[&invocation].0;
        let task = self.declared.graph[node].task().expect("a task");
        let outputs: Vec<(String, ObjectRef)> = task
            .spec
            .outputs
            .iter()
            .map(|o| {
                self.next_object += 1;
                let json = (o.kind != ValueKind::Bytes).then(|| Arc::new(serde_json::json!([0])));
                let object = ObjectRef {
                    id: self.next_object,
                    len: 1,
                    json,
                };
                (o.name.clone(), object)
            })
            .collect();
        for other in self.members[&version].clone() {
            let event = Event::FunctionDone {
                invocation,
                node,
                element,
                outputs: outputs.clone(),
            };
            if other == w {
                let clock = self.clock;
                self.workers[w].engine.handle(clock, event);
            } else {
                let delay = self.latency();
                self.send(delay, Msg::Event { to: other, event });
            }
        }
    }

    /// Worker `lost` was found lost: the other workers abort the invocations whose version
    /// it is in (as daemons told `WorkerLost` do).
    fn tell_lost(&mut self, lost: usize) {
        let running: Vec<u64> = self
            .ended
            .iter()
            .filter(|(_, (v, _))| self.members[v].contains(&lost))
            .map(|(i, _)| *i)
            .collect();
        let name = self.workers[lost].name.clone();
        for w in &mut self.workers {
            if !w.alive {
                continue;
            }
            w.lost.insert(lost);
            for &i in &running {
                if w.engine.is_running(i) {
                    w.engine.abort(i, format!("worker `{name}` was lost"));
                }
            }
        }
    }

    /// Acts on what every live engine asks for.
    fn drain(&mut self) {
        for w in 0..self.workers.len() {
            if !self.workers[w].alive {
                continue;
            }
            while let Some(action) = self.workers[w].engine.poll_action() {
                match action {
                    Action::Trigger {
                        invocation,
                        node,
                        element,
                        ..
                    } => {
                        *self.triggered.entry((invocation, node, element)).or_default() += 1;
                        let runtime = Duration::from_millis(1 + self.rand() % 5);
                        self.send(
                            runtime,
                            Msg::Ran {
                                to: w,
                                node,
                                element,
                                invocation,
                            },
                        );
                    }
                    Action::Finished { invocation, result } => {
                        let ends = &mut self.ended.get_mut(&invocation).expect("a started invocation").1;
                        assert!(
                            ends.insert(w, result.map(drop).map_err(|e| e.to_string())).is_none(),
                            "an engine ended an invocation twice"
                        );
                    }
                    Action::Release { .. } | Action::Cancel { .. } | Action::Caught { .. } => {}
                }
            }
        }
    }

    /// Runs the cluster for `span`: heartbeats and looks every interval, an invocation every
    /// `every` (numbered from `first`), worker `crash` stopping at `crash_at`.
    fn run(&mut self, span: Duration, every: Duration, crash: Option<(usize, Duration)>) {
        let end = self.clock + span;
        let mut invocation = self.ended.keys().max().copied().unwrap_or(0);
        while self.clock < end {
            self.clock += STEP;
            if let Some((w, at)) = crash
                && self.clock == at
            {
                self.workers[w].alive = false;
            }
            if self.clock.as_millis().is_multiple_of(INTERVAL.as_millis()) {
                for w in 0..self.workers.len() {
                    if self.workers[w].alive && !self.rand().is_multiple_of(self.loss) {
                        let delay = self.latency();
                        self.send(delay, Msg::Heartbeat { from: w });
                    }
                }
                self.control();
            }
            if self.clock.as_millis().is_multiple_of(every.as_millis()) {
                invocation += 1;
                self.invoke(invocation);
            }
            while let Some(Reverse((at, _, key))) = self.queue.peek().copied() {
                if at > self.clock {
                    break;
                }
                self.queue.pop();
                let msg = self.msgs.remove(&key).expect("a message");
                self.deliver(msg);
                self.drain();
            }
            let clock = self.clock;
            for w in self.workers.iter_mut().filter(|w| w.alive) {
                w.engine.tick(clock);
            }
            self.drain();
        }
    }
}

fn invocation_of(e: &Event) -> u64 {
    match e {
        Event::FunctionDone { invocation, .. } | Event::FunctionFailed { invocation, .. } => *invocation,
    }
}

fn addr(port: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9000 + port as u16))
}

/// Heartbeats lost one in three and up to 30 ms of latency do not lose a worker that
/// answers: no worker is found lost, one version serves every invocation, and every
/// invocation ends the same way on every worker, each step run once.
#[test]
fn late_and_lost_heartbeats_lose_no_live_worker() {
    for seed in 1..=5 {
        let mut sim = Sim::new(seed, 3);
        sim.run(Duration::from_secs(5), Duration::from_millis(20), None);
        // Let the last invocations end.
        sim.run(Duration::from_millis(500), Duration::from_secs(3600), None);
        assert_eq!(sim.found_lost, BTreeMap::new(), "seed {seed}");
        assert_eq!(
            sim.deployed.last, 1,
            "seed {seed}: no version was needed beyond the first"
        );
        assert!(sim.ended.len() > 200, "seed {seed}: {} invocations", sim.ended.len());
        for (i, (_, ends)) in &sim.ended {
            assert_eq!(
                ends.len(),
                3,
                "seed {seed}: invocation {i} ended on {} workers",
                ends.len()
            );
            assert!(
                ends.values().all(Result::is_ok),
                "seed {seed}: invocation {i}: {ends:?}"
            );
        }
        assert!(sim.triggered.values().all(|n| *n == 1), "seed {seed}: a step ran twice");
        for w in &sim.workers {
            assert_eq!(w.engine.invocations_in_flight(), 0, "seed {seed}: {}", w.name);
            assert_eq!(w.engine.objects_held(), 0, "seed {seed}: {}", w.name);
        }
    }
}

/// A worker that stops is found lost within a loss window, an interval and a probe; the
/// invocations that involved it fail naming it on every live worker (none hangs); one new
/// version is planned onto the live workers; and every invocation started after it succeeds.
#[test]
fn a_stopped_worker_is_found_lost_and_its_workflow_planned_again_once() {
    for seed in 1..=5 {
        let mut sim = Sim::new(seed, 10);
        let crash_at = Duration::from_millis(1_003);
        sim.run(Duration::from_secs(4), Duration::from_millis(20), Some((2, crash_at)));
        sim.run(Duration::from_millis(500), Duration::from_secs(3600), None);
        let found = sim
            .found_lost
            .get(&2)
            .copied()
            .unwrap_or_else(|| panic!("seed {seed}: w2 was not found lost"));
        assert!(
            found <= crash_at + INTERVAL * 4 + PROBE_TIMEOUT + INTERVAL,
            "seed {seed}: found lost {} ms after it stopped",
            (found - crash_at).as_millis()
        );
        assert_eq!(
            sim.found_lost.len(),
            1,
            "seed {seed}: only w2 is lost: {:?}",
            sim.found_lost
        );
        assert_eq!(sim.deployed.last, 2, "seed {seed}: one loss makes one version");
        let newest = &sim.deployed.versions[0];
        assert!(
            !newest.daemons.contains(&"w2".to_owned()),
            "seed {seed}: {:?}",
            newest.daemons
        );
        let live: BTreeSet<usize> = [0, 1].into();
        let mut after = 0;
        for (i, (version, ends)) in &sim.ended {
            let on: BTreeSet<usize> = ends.keys().copied().filter(|w| live.contains(w)).collect();
            let members: BTreeSet<usize> = sim.members[version]
                .iter()
                .copied()
                .filter(|w| live.contains(w))
                .collect();
            assert_eq!(
                on, members,
                "seed {seed}: invocation {i} did not end on every live worker of its version"
            );
            if *version == 2 {
                after += 1;
                assert!(
                    ends.values().all(Result::is_ok),
                    "seed {seed}: invocation {i}: {ends:?}"
                );
            }
            for r in ends.values() {
                if let Err(e) = r {
                    assert!(
                        e.contains("w2"),
                        "seed {seed}: invocation {i} failed without naming w2: {e}"
                    );
                }
            }
        }
        assert!(after > 50, "seed {seed}: {after} invocations on the new version");
        for w in sim.workers.iter().filter(|w| w.alive) {
            assert_eq!(w.engine.invocations_in_flight(), 0, "seed {seed}: {}", w.name);
            assert_eq!(w.engine.objects_held(), 0, "seed {seed}: {}", w.name);
        }
        assert_eq!(
            version_fault(&sim.registry, newest, sim.now()),
            None,
            "seed {seed}: the new version has no fault"
        );
    }
}
