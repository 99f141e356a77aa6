use expect_test::expect;
use faasflow_core::Pos;
use faasflow_core::dag::{
    Case, DataSource, Edge, FailureKind, FailureKinds, Foreach, FunctionSpec, InputBinding, Isolation, JoinKind, Node,
    NodeId, NodeKind, OutputDecl, Retry, SourceFormat, Switch, Task, ValueKind, Workflow, WorkflowInput,
    WorkflowOutput,
};
use faasflow_core::plan::{ClusterView, CriticalPath, Group, Mode, Plan, Tier, WorkerLoad, WorkerView};
use faasflow_proto::v1 as pb;
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;
use prost::Message;

use super::*;

// ---------------------------------------------------------------------------------------------
// A workflow with every node kind, and a plan for it
// ---------------------------------------------------------------------------------------------

fn output(node: u32, name: &str) -> DataSource {
    DataSource::Output {
        node: NodeIndex::new(node as usize),
        output: name.to_owned(),
    }
}

fn id(n: u32) -> NodeId {
    NodeIndex::new(n as usize)
}

fn spec(outputs: &[(&str, ValueKind, u64)]) -> FunctionSpec {
    FunctionSpec {
        pack: None,
        image: None,
        memory_mib: 256,
        cpu_millis: 1000,
        timeout_ms: 10_000,
        retry: Retry::default(),
        isolation: Isolation::Thread,
        network: false,
        idempotent: false,
        python: None,
        scale: 1,
        runtime_ms: 5.0,
        memory_use_mib: 32.0,
        outputs: outputs
            .iter()
            .map(|&(name, kind, size)| OutputDecl {
                name: name.to_owned(),
                kind,
                size,
            })
            .collect(),
    }
}

fn task(name: &str, pos: Pos, spec: FunctionSpec, inputs: Vec<(&str, Vec<DataSource>)>) -> Node {
    Node {
        name: name.to_owned(),
        pos,
        kind: NodeKind::Task(Task {
            function: name.to_owned(),
            spec,
            inputs: inputs
                .into_iter()
                .map(|(name, sources)| InputBinding {
                    name: name.to_owned(),
                    sources,
                })
                .collect(),
        }),
        scope: None,
    }
}

fn virtual_node(name: &str, kind: NodeKind) -> Node {
    Node {
        name: name.to_owned(),
        pos: Pos::UNKNOWN,
        kind,
        scope: None,
    }
}

/// Node indices of [`sample_workflow`].
const START: u32 = 0;
const ROUTE: u32 = 1;
const FAST: u32 = 2;
const SLOW: u32 = 3;
const FALLBACK: u32 = 4;
const ROUTE_JOIN: u32 = 5;
const EACH: u32 = 6;
const BODY: u32 = 7;
const BODY2: u32 = 8;
const COLLECT: u32 = 9;
const MERGE: u32 = 10;
const END: u32 = 11;

/// start → route (switch: fast | slow | default fallback) → join ┐
/// start → each (foreach over start.list: body → body2) → collect ┴→ merge → END
fn sample_workflow() -> Workflow {
    let mut wf = Workflow::new("every-kind", SourceFormat::FaasflowHierarchical);
    wf.inputs = vec![
        WorkflowInput {
            name: "data".into(),
            kind: ValueKind::List,
            size: 1 << 20,
        },
        WorkflowInput {
            name: "flag".into(),
            kind: ValueKind::Json,
            size: 16,
        },
    ];
    let full_spec = FunctionSpec {
        pack: Some("pack-a".into()),
        image: Some("registry.local/pack-a:1".into()),
        memory_mib: 512,
        cpu_millis: 1500,
        timeout_ms: 30_000,
        retry: Retry {
            attempts: 3,
            backoff_ms: 250,
            jitter: 0.25,
            on: FailureKinds::NONE.with(FailureKind::Crash).with(FailureKind::Timeout),
        },
        isolation: Isolation::Container,
        network: true,
        idempotent: true,
        python: None,
        scale: 2,
        runtime_ms: 12.5,
        memory_use_mib: 100.25,
        outputs: vec![
            OutputDecl {
                name: "list".into(),
                kind: ValueKind::List,
                size: 4096,
            },
            OutputDecl {
                name: "cfg".into(),
                kind: ValueKind::Json,
                size: 64,
            },
            OutputDecl {
                name: "blob".into(),
                kind: ValueKind::Bytes,
                size: 1 << 24,
            },
        ],
    };
    let g = &mut wf.graph;
    g.add_node(task(
        "start",
        Pos::new(3, 5),
        full_spec,
        vec![
            ("data", vec![DataSource::Input("data".into())]),
            ("flag", vec![DataSource::Input("flag".into())]),
        ],
    ));
    g.add_node(Node {
        name: "route".into(),
        pos: Pos::new(9, 5),
        kind: NodeKind::Switch(Switch {
            cases: vec![
                Case {
                    condition: "start.cfg.fast == true".into(),
                    pos: Pos::new(11, 13),
                },
                Case {
                    condition: "start.cfg.mode == 'b'".into(),
                    pos: Pos::new(13, 13),
                },
            ],
        }),
        scope: None,
    });
    let out = [("out", ValueKind::Json, 128)];
    let mut proc_spec = spec(&out);
    proc_spec.isolation = Isolation::Process;
    g.add_node(task(
        "fast",
        Pos::new(12, 9),
        spec(&out),
        vec![("cfg", vec![output(START, "cfg")])],
    ));
    g.add_node(task(
        "slow",
        Pos::new(14, 9),
        proc_spec,
        vec![("blob", vec![output(START, "blob")])],
    ));
    g.add_node(task("fallback", Pos::new(16, 9), spec(&out), vec![]));
    g.add_node(virtual_node("route.join", NodeKind::Join(JoinKind::Parallel)));
    g.add_node(Node {
        name: "each".into(),
        pos: Pos::new(18, 5),
        kind: NodeKind::Foreach(Foreach {
            over: output(START, "list"),
            max_concurrency: 4,
            width: 16,
            collect: id(COLLECT),
        }),
        scope: None,
    });
    let mut body = task(
        "body",
        Pos::new(20, 9),
        spec(&out),
        vec![
            ("item", vec![DataSource::Item(id(EACH))]),
            ("index", vec![DataSource::Index(id(EACH))]),
        ],
    );
    body.scope = Some(id(EACH));
    g.add_node(body);
    let mut body2 = task(
        "body2",
        Pos::new(22, 9),
        spec(&out),
        vec![("x", vec![output(BODY, "out")])],
    );
    body2.scope = Some(id(EACH));
    g.add_node(body2);
    g.add_node(virtual_node("each.collect", NodeKind::Join(JoinKind::Collect)));
    g.add_node(task(
        "merge",
        Pos::new(25, 5),
        spec(&out),
        vec![
            (
                "choice",
                vec![output(FAST, "out"), output(SLOW, "out"), output(FALLBACK, "out")],
            ),
            ("items", vec![output(BODY2, "out")]),
        ],
    ));
    g.add_node(virtual_node("END", NodeKind::Join(JoinKind::End)));

    let control = |case: Option<u32>| Edge {
        control: true,
        case,
        data: vec![],
        bytes: 0,
        on_failure: false,
    };
    let data = |pairs: &[(&str, &str)], bytes: u64| Edge {
        control: false,
        case: None,
        data: pairs.iter().map(|&(o, i)| (o.to_owned(), i.to_owned())).collect(),
        bytes,
        on_failure: false,
    };
    g.add_edge(id(START), id(ROUTE), control(None));
    g.add_edge(id(ROUTE), id(FAST), control(Some(0)));
    g.add_edge(id(ROUTE), id(SLOW), control(Some(1)));
    g.add_edge(id(ROUTE), id(FALLBACK), control(Some(2)));
    g.add_edge(id(START), id(FAST), data(&[("cfg", "cfg")], 64));
    g.add_edge(id(START), id(SLOW), data(&[("blob", "blob")], 1 << 24));
    g.add_edge(id(FAST), id(ROUTE_JOIN), control(None));
    g.add_edge(id(SLOW), id(ROUTE_JOIN), control(None));
    g.add_edge(id(FALLBACK), id(ROUTE_JOIN), control(None));
    g.add_edge(
        id(START),
        id(EACH),
        Edge {
            control: true,
            case: None,
            data: vec![("list".into(), "over".into())],
            bytes: 4096,
            on_failure: false,
        },
    );
    g.add_edge(id(EACH), id(BODY), control(None));
    g.add_edge(
        id(BODY),
        id(BODY2),
        Edge {
            control: true,
            case: None,
            data: vec![("out".into(), "x".into())],
            bytes: 128,
            on_failure: false,
        },
    );
    g.add_edge(id(BODY2), id(COLLECT), control(None));
    g.add_edge(id(ROUTE_JOIN), id(MERGE), control(None));
    g.add_edge(id(COLLECT), id(MERGE), control(None));
    g.add_edge(id(FAST), id(MERGE), data(&[("out", "choice")], 128));
    g.add_edge(id(SLOW), id(MERGE), data(&[("out", "choice")], 128));
    g.add_edge(id(FALLBACK), id(MERGE), data(&[("out", "choice")], 128));
    g.add_edge(id(BODY2), id(MERGE), data(&[("out", "items")], 2048));
    g.add_edge(id(MERGE), id(END), data(&[("out", "result")], 128));

    wf.outputs = vec![WorkflowOutput {
        name: "result".into(),
        sources: vec![output(MERGE, "out")],
    }];
    wf.contention = vec![(id(FAST), id(SLOW))];
    wf
}

fn sample_cluster() -> ClusterView {
    ClusterView {
        workers: vec![
            WorkerView {
                name: "worker-a".into(),
                slots: 8,
            },
            WorkerView {
                name: "worker-b".into(),
                slots: 4,
            },
        ],
    }
}

fn sample_plan(wf: &Workflow) -> Plan {
    let g0 = [START, ROUTE, FAST, SLOW, FALLBACK, ROUTE_JOIN, MERGE, END];
    let g1 = [EACH, BODY, BODY2, COLLECT];
    let mut node_group = vec![0; wf.graph.node_count()];
    for &n in &g1 {
        node_group[n as usize] = 1;
    }
    let tiers = [Tier::InProcess, Tier::SharedMemory, Tier::Peer, Tier::Remote];
    Plan {
        workflow: wf.name.clone(),
        version: 7,
        mode: Mode::WorkerSp,
        groups: vec![
            Group {
                id: 0,
                worker: 0,
                nodes: g0.iter().map(|&n| id(n)).collect(),
                slots: 6,
                quota_bytes: 300 << 20,
                local_bytes: 1 << 24,
            },
            Group {
                id: 1,
                worker: 1,
                nodes: g1.iter().map(|&n| id(n)).collect(),
                slots: 2,
                quota_bytes: 0,
                local_bytes: 128,
            },
        ],
        node_group,
        edge_tiers: (0..wf.graph.edge_count()).map(|i| tiers[i % tiers.len()]).collect(),
        workers: vec![
            WorkerLoad {
                slots_used: 6,
                quota_bytes: 300 << 20,
                memory_bytes: 1 << 24,
            },
            WorkerLoad {
                slots_used: 2,
                quota_bytes: 0,
                memory_bytes: 2176,
            },
        ],
        critical_path: CriticalPath {
            nodes: [START, ROUTE, SLOW, ROUTE_JOIN, MERGE, END]
                .iter()
                .map(|&n| id(n))
                .collect(),
            cost_ms: 42.5,
        },
        merges: 5,
        overcommitted: true,
    }
}

/// The sample plan on the wire.
fn sample_proto() -> pb::Plan {
    let wf = sample_workflow();
    plan_to_proto(&wf, &sample_plan(&wf), &sample_cluster())
}

/// A change to the sample plan on the wire.
type Edit = Box<dyn FnOnce(&mut pb::Plan)>;

fn edit(f: impl FnOnce(&mut pb::Plan) + 'static) -> Edit {
    Box::new(f)
}

/// The sample plan on the wire after `change`, decoded.
fn decode_edited(change: impl FnOnce(&mut pb::Plan)) -> Result<(Workflow, Plan, ClusterView), ConvertError> {
    let mut p = sample_proto();
    change(&mut p);
    plan_from_proto(&p)
}

fn graph(p: &mut pb::Plan) -> &mut pb::WorkflowGraph {
    p.graph.as_mut().expect("the sample has a graph")
}

fn node(p: &mut pb::Plan, n: u32) -> &mut pb::Node {
    &mut graph(p).nodes[n as usize]
}

fn kind(p: &mut pb::Plan, n: u32) -> &mut pb::node::Kind {
    node(p, n).kind.as_mut().expect("the sample's nodes have a kind")
}

fn task_of(p: &mut pb::Plan, n: u32) -> &mut pb::Task {
    match kind(p, n) {
        pb::node::Kind::Task(t) => t,
        _ => panic!("node {n} is not a task"),
    }
}

fn foreach_of(p: &mut pb::Plan, n: u32) -> &mut pb::Foreach {
    match kind(p, n) {
        pb::node::Kind::Foreach(f) => f,
        _ => panic!("node {n} is not a foreach"),
    }
}

fn spec_of(p: &mut pb::Plan, n: u32) -> &mut pb::FunctionSpec {
    task_of(p, n).spec.as_mut().expect("the sample's tasks have a spec")
}

/// Index of the edge `source → target` (the first one).
fn edge_index(p: &mut pb::Plan, source: u32, target: u32) -> usize {
    graph(p)
        .edges
        .iter()
        .position(|e| e.source == source && e.target == target)
        .expect("the sample has this edge")
}

/// Compares two workflows field by field (petgraph's graph has no `PartialEq`): the node list
/// and the edge list, with endpoints, in index order.
fn assert_same_workflow(a: &Workflow, b: &Workflow) {
    assert_eq!(a.name, b.name);
    assert_eq!(a.format, b.format);
    assert_eq!(a.inputs, b.inputs);
    assert_eq!(a.outputs, b.outputs);
    assert_eq!(a.contention, b.contention);
    assert_eq!(a.deadline_ms, b.deadline_ms);
    let nodes = |w: &Workflow| w.graph.node_weights().cloned().collect::<Vec<_>>();
    assert_eq!(nodes(a), nodes(b));
    let edges = |w: &Workflow| {
        w.graph
            .edge_references()
            .map(|e| (e.id(), e.source(), e.target(), e.weight().clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(edges(a), edges(b));
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

fn round_trip(wf: &Workflow, plan: &Plan, cluster: &ClusterView) {
    let bytes = plan_to_proto(wf, plan, cluster).encode_to_vec();
    let decoded = pb::Plan::decode(bytes.as_slice()).expect("our own encoding decodes");
    let (wf2, plan2, cluster2) = plan_from_proto(&decoded).expect("our own plan is valid");
    assert_same_workflow(wf, &wf2);
    assert_eq!(plan, &plan2);
    assert_eq!(cluster, &cluster2);
}

#[test]
fn round_trip_keeps_every_node_kind_and_every_field() {
    let wf = sample_workflow();
    // The sample really has every kind, so the round trip covers them all.
    let kinds: Vec<&str> = wf.graph.node_weights().map(|n| n.kind.as_str()).collect();
    for k in ["task", "switch", "foreach", "join", "collect", "end"] {
        assert!(kinds.contains(&k), "sample lacks a {k} node");
    }
    round_trip(&wf, &sample_plan(&wf), &sample_cluster());
}

#[test]
fn round_trip_of_a_mastersp_plan_with_every_tier_and_format() {
    let mut wf = sample_workflow();
    let mut plan = sample_plan(&wf);
    plan.mode = Mode::MasterSp;
    plan.overcommitted = false;
    plan.edge_tiers.iter_mut().for_each(|t| *t = Tier::Remote);
    for format in [
        SourceFormat::Native,
        SourceFormat::FaasflowFlat,
        SourceFormat::FaasflowHierarchical,
    ] {
        wf.format = format;
        round_trip(&wf, &plan, &sample_cluster());
    }
}

#[test]
fn round_trip_of_an_empty_workflow() {
    let wf = Workflow::new("empty", SourceFormat::Native);
    let plan = Plan {
        workflow: "empty".into(),
        version: 1,
        mode: Mode::WorkerSp,
        groups: vec![],
        node_group: vec![],
        edge_tiers: vec![],
        workers: vec![WorkerLoad {
            slots_used: 0,
            quota_bytes: 0,
            memory_bytes: 0,
        }],
        critical_path: CriticalPath {
            nodes: vec![],
            cost_ms: 0.0,
        },
        merges: 0,
        overcommitted: false,
    };
    round_trip(&wf, &plan, &ClusterView::uniform(1, 4));
}

#[test]
fn decoded_plan_can_be_indexed_without_checks() {
    let (wf, plan, cluster) = plan_from_proto(&sample_proto()).unwrap();
    for n in wf.graph.node_indices() {
        assert!((plan.worker_of(n) as usize) < cluster.workers.len());
    }
    for e in wf.graph.edge_indices() {
        let _ = plan.tier(e);
    }
    assert_eq!(plan.worker_of(id(BODY)), 1);
}

#[test]
fn mode_converts_both_ways() {
    for mode in [Mode::WorkerSp, Mode::MasterSp, Mode::WorkerSpRemote] {
        assert_eq!(mode_from_proto(mode_to_proto(mode), "mode"), Ok(mode));
    }
    for unknown in [0, 4] {
        assert!(matches!(
            mode_from_proto(unknown, "mode"),
            Err(ConvertError::UnknownEnum { .. })
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// Validation: one test per error
// ---------------------------------------------------------------------------------------------

#[test]
fn the_unedited_sample_is_valid() {
    assert!(decode_edited(|_| {}).is_ok());
}

#[test]
fn missing_messages_and_oneofs() {
    let cases: Vec<(&str, Edit)> = vec![
        ("graph", edit(|p| p.graph = None)),
        ("critical_path", edit(|p| p.critical_path = None)),
        ("graph.nodes[5].kind", edit(|p| node(p, ROUTE_JOIN).kind = None)),
        ("graph.nodes[0].task.spec", edit(|p| task_of(p, START).spec = None)),
        (
            "graph.nodes[0].task.spec.retry",
            edit(|p| spec_of(p, START).retry = None),
        ),
        ("graph.nodes[6].foreach.over", edit(|p| foreach_of(p, EACH).over = None)),
        (
            "graph.nodes[10].task.inputs[0].sources[1].source",
            edit(|p| task_of(p, MERGE).inputs[0].sources[1].source = None),
        ),
        (
            "graph.outputs[0].sources[0].source",
            edit(|p| graph(p).outputs[0].sources[0].source = None),
        ),
    ];
    for (field, edit) in cases {
        match decode_edited(edit) {
            Err(ConvertError::Missing { field: f }) => assert_eq!(f, field),
            other => panic!("{field}: expected Missing, got {other:?}"),
        }
    }
}

#[test]
fn unknown_and_unspecified_enum_values() {
    let cases: Vec<(&str, i32, Edit)> = vec![
        ("mode", 0, edit(|p| p.mode = 0)),
        ("mode", 4, edit(|p| p.mode = 4)),
        ("graph.format", -1, edit(|p| graph(p).format = -1)),
        ("edge_tiers[2]", 9, edit(|p| p.edge_tiers[2] = 9)),
        (
            "graph.nodes[5].join",
            0,
            edit(|p| *kind(p, ROUTE_JOIN) = pb::node::Kind::Join(0)),
        ),
        (
            "graph.nodes[0].task.spec.isolation",
            42,
            edit(|p| spec_of(p, START).isolation = 42),
        ),
        (
            "graph.nodes[0].task.spec.outputs[1].kind",
            7,
            edit(|p| spec_of(p, START).outputs[1].kind = 7),
        ),
        ("graph.inputs[1].kind", 0, edit(|p| graph(p).inputs[1].kind = 0)),
    ];
    for (field, value, edit) in cases {
        match decode_edited(edit) {
            Err(ConvertError::UnknownEnum { field: f, value: v, .. }) => {
                assert_eq!((f.as_str(), v), (field, value));
            }
            other => panic!("{field}: expected UnknownEnum, got {other:?}"),
        }
    }
}

#[test]
fn indices_out_of_range() {
    let cases: Vec<(&str, &str, Edit)> = vec![
        (
            "graph.edges[3].target",
            "nodes",
            edit(|p| graph(p).edges[3].target = 12),
        ),
        (
            "graph.edges[0].source",
            "nodes",
            edit(|p| graph(p).edges[0].source = u32::MAX),
        ),
        (
            "graph.nodes[7].scope",
            "nodes",
            edit(|p| node(p, BODY).scope = Some(99)),
        ),
        (
            "graph.nodes[6].foreach.collect",
            "nodes",
            edit(|p| foreach_of(p, EACH).collect = 12),
        ),
        (
            "graph.nodes[2].task.inputs[0].sources[0].output.node",
            "nodes",
            edit(|p| {
                task_of(p, FAST).inputs[0].sources[0].source = Some(pb::data_source::Source::Output(pb::NodeOutput {
                    node: 40,
                    output: "cfg".into(),
                }));
            }),
        ),
        (
            "graph.contention[0].b",
            "nodes",
            edit(|p| graph(p).contention[0].b = 12),
        ),
        ("groups[1].worker", "workers", edit(|p| p.groups[1].worker = 2)),
        ("groups[0].nodes[3]", "nodes", edit(|p| p.groups[0].nodes[3] = 100)),
        ("node_group[4]", "groups", edit(|p| p.node_group[4] = 2)),
        (
            "critical_path.nodes[1]",
            "nodes",
            edit(|p| p.critical_path.as_mut().unwrap().nodes[1] = 12),
        ),
    ];
    for (field, what, edit) in cases {
        match decode_edited(edit) {
            Err(ConvertError::IndexOutOfRange { field: f, what: w, .. }) => {
                assert_eq!((f.as_str(), w), (field, what));
            }
            other => panic!("{field}: expected IndexOutOfRange, got {other:?}"),
        }
    }
}

#[test]
fn per_node_and_per_edge_tables_must_have_matching_lengths() {
    let short = decode_edited(|p| {
        p.node_group.pop();
    });
    assert!(
        matches!(
            short,
            Err(ConvertError::LengthMismatch {
                field: "node_group",
                len: 11,
                expected: 12,
                ..
            })
        ),
        "{short:?}"
    );
    let long = decode_edited(|p| p.edge_tiers.push(pb::Tier::Peer as i32));
    assert!(
        matches!(
            long,
            Err(ConvertError::LengthMismatch {
                field: "edge_tiers",
                len: 21,
                expected: 20,
                ..
            })
        ),
        "{long:?}"
    );
}

#[test]
fn group_ids_must_be_positions() {
    let r = decode_edited(|p| p.groups[1].id = 0);
    assert!(matches!(r, Err(ConvertError::GroupId { index: 1, id: 0 })), "{r:?}");
}

#[test]
fn a_node_in_two_groups_is_rejected() {
    let r = decode_edited(|p| p.groups[1].nodes.push(START));
    assert!(
        matches!(
            r,
            Err(ConvertError::NodeInSeveralGroups {
                node: START,
                first: 0,
                second: 1
            })
        ),
        "{r:?}"
    );
}

#[test]
fn a_node_in_no_group_is_rejected() {
    let r = decode_edited(|p| p.groups[0].nodes.retain(|&n| n != MERGE));
    assert!(
        matches!(
            r,
            Err(ConvertError::NodeInNoGroup {
                node: MERGE,
                node_group: 0
            })
        ),
        "{r:?}"
    );
}

#[test]
fn node_group_must_agree_with_the_groups() {
    let r = decode_edited(|p| p.node_group[START as usize] = 1);
    assert!(
        matches!(
            r,
            Err(ConvertError::GroupMismatch {
                node: START,
                node_group: 1,
                group: 0
            })
        ),
        "{r:?}"
    );
}

#[test]
fn a_cyclic_graph_is_rejected() {
    let r = decode_edited(|p| {
        graph(p).edges.push(pb::Edge {
            source: MERGE,
            target: ROUTE,
            control: true,
            ..Default::default()
        });
        p.edge_tiers.push(pb::Tier::InProcess as i32);
    });
    match r {
        Err(ConvertError::Cycle { nodes }) => {
            assert!(nodes.contains(&MERGE) && nodes.contains(&ROUTE), "{nodes:?}");
        }
        other => panic!("expected Cycle, got {other:?}"),
    }
}

#[test]
fn a_self_loop_is_a_cycle() {
    let r = decode_edited(|p| {
        graph(p).edges.push(pb::Edge {
            source: BODY,
            target: BODY,
            ..Default::default()
        });
        p.edge_tiers.push(pb::Tier::InProcess as i32);
    });
    assert!(
        matches!(&r, Err(ConvertError::Cycle { nodes }) if nodes == &[BODY]),
        "{r:?}"
    );
}

#[test]
fn scopes_items_and_indices_must_name_foreach_nodes() {
    let cases: Vec<(&str, Edit)> = vec![
        ("graph.nodes[7].scope", edit(|p| node(p, BODY).scope = Some(START))),
        (
            "graph.nodes[7].task.inputs[0].sources[0].item",
            edit(|p| {
                task_of(p, BODY).inputs[0].sources[0].source = Some(pb::data_source::Source::Item(ROUTE));
            }),
        ),
        (
            "graph.nodes[7].task.inputs[1].sources[0].index",
            edit(|p| {
                task_of(p, BODY).inputs[1].sources[0].source = Some(pb::data_source::Source::Index(COLLECT));
            }),
        ),
        (
            "graph.nodes[6].foreach.over.item",
            edit(|p| {
                foreach_of(p, EACH).over = Some(pb::DataSource {
                    source: Some(pb::data_source::Source::Item(BODY)),
                });
            }),
        ),
    ];
    for (field, edit) in cases {
        match decode_edited(edit) {
            Err(ConvertError::NotAForeach { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: expected NotAForeach, got {other:?}"),
        }
    }
}

#[test]
fn a_foreach_inside_itself_is_rejected() {
    let r = decode_edited(|p| node(p, EACH).scope = Some(EACH));
    assert!(matches!(r, Err(ConvertError::ScopeCycle { node: EACH })), "{r:?}");
}

#[test]
fn two_foreach_nodes_inside_each_other_are_rejected() {
    // Make `body` a foreach too, then put `each` in its scope: each ⊂ body ⊂ each.
    let r = decode_edited(|p| {
        *kind(p, BODY) = pb::node::Kind::Foreach(pb::Foreach {
            over: Some(pb::DataSource {
                source: Some(pb::data_source::Source::Input("data".into())),
            }),
            max_concurrency: 0,
            width: 1,
            collect: COLLECT,
        });
        node(p, EACH).scope = Some(BODY);
    });
    assert!(matches!(r, Err(ConvertError::ScopeCycle { .. })), "{r:?}");
}

#[test]
fn a_collect_node_must_be_a_join() {
    let r = decode_edited(|p| foreach_of(p, EACH).collect = BODY);
    assert!(
        matches!(&r, Err(ConvertError::CollectNotJoin { field, node: BODY, kind: "task" }) if field == "graph.nodes[6].foreach.collect"),
        "{r:?}"
    );
}

#[test]
fn a_case_must_be_at_most_the_default() {
    // `route` has two conditions: cases 0 and 1, default 2.
    let r = decode_edited(|p| {
        let e = edge_index(p, ROUTE, FALLBACK);
        graph(p).edges[e].case = Some(3);
    });
    assert!(
        matches!(
            &r,
            Err(ConvertError::CaseOutOfRange {
                case: 3,
                switch: ROUTE,
                cases: 2,
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn only_edges_leaving_a_switch_have_a_case() {
    let r = decode_edited(|p| {
        let e = edge_index(p, START, EACH);
        graph(p).edges[e].case = Some(0);
    });
    assert!(
        matches!(
            &r,
            Err(ConvertError::CaseWithoutSwitch {
                node: START,
                kind: "task",
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn round_trip_of_a_catch_step_and_a_deadline() {
    let src = "name: caught\ndeadline: 1500ms\nfunctions:\n  a: {retry: {attempts: 2, on: [crash]}, outputs: {x: bytes}}\n  b: {outputs: {x: bytes}}\n  c: {}\nsteps:\n  - task: a\n    catch: b\n  - task: c\n    inputs: {x: a.x}\n";
    let wf = faasflow_planner::load::load_str(src, "caught.yaml", "caught")
        .expect("loads")
        .workflow;
    assert_eq!(wf.deadline_ms, Some(1500));
    let catch_edges: Vec<_> = wf.graph.edge_references().filter(|e| e.weight().on_failure).collect();
    assert_eq!(catch_edges.len(), 1);
    let cluster = ClusterView::uniform(2, 8);
    let plan = faasflow_planner::partition(&wf, &cluster, &faasflow_core::PlannerConfig::default()).expect("plan");
    round_trip(&wf, &plan, &cluster);
}

#[test]
fn a_catch_edge_must_leave_a_task_without_a_case() {
    let r = decode_edited(|p| {
        let e = edge_index(p, ROUTE, FAST);
        graph(p).edges[e].on_failure = true;
    });
    let err = r.expect_err("a switch edge cannot be a catch edge").to_string();
    assert!(
        err.starts_with("`graph.edges[") && err.contains("on_failure` is set, but the edge is not a control edge without a case leaving a task (its source, node 1, is a switch node)"),
        "{err}"
    );
}

#[test]
fn numbers_must_be_finite_and_in_range() {
    let cases: Vec<(&str, Edit)> = vec![
        (
            "graph.nodes[0].task.spec.runtime_ms",
            edit(|p| spec_of(p, START).runtime_ms = f64::NAN),
        ),
        (
            "graph.nodes[0].task.spec.memory_use_mib",
            edit(|p| spec_of(p, START).memory_use_mib = f64::INFINITY),
        ),
        (
            "graph.nodes[0].task.spec.retry.jitter",
            edit(|p| spec_of(p, START).retry.as_mut().unwrap().jitter = 1.5),
        ),
        (
            "critical_path.cost_ms",
            edit(|p| p.critical_path.as_mut().unwrap().cost_ms = -1.0),
        ),
    ];
    for (field, edit) in cases {
        match decode_edited(edit) {
            Err(ConvertError::InvalidNumber { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: expected InvalidNumber, got {other:?}"),
        }
    }
}

#[test]
fn names_must_be_unique() {
    let r = decode_edited(|p| node(p, FALLBACK).name = "fast".into());
    assert!(
        matches!(&r, Err(ConvertError::DuplicateName { field, first, .. })
            if field == "graph.nodes[4].name" && first == "graph.nodes[2].name"),
        "{r:?}"
    );
    let r = decode_edited(|p| p.workers[1].name = "worker-a".into());
    assert!(
        matches!(&r, Err(ConvertError::DuplicateName { field, .. }) if field == "workers[1].name"),
        "{r:?}"
    );
}

#[test]
fn the_plan_and_its_graph_must_name_the_same_workflow() {
    let r = decode_edited(|p| p.workflow = "other".into());
    assert!(matches!(r, Err(ConvertError::NameMismatch { .. })), "{r:?}");
}

#[test]
fn error_messages_name_the_field_and_the_index() {
    let messages: Vec<String> = [
        decode_edited(|p| graph(p).edges[3].target = 12),
        decode_edited(|p| p.edge_tiers[2] = 9),
        decode_edited(|p| {
            p.node_group.pop();
        }),
        decode_edited(|p| p.groups[1].nodes.push(START)),
        decode_edited(|p| {
            let e = edge_index(p, ROUTE, FALLBACK);
            graph(p).edges[e].case = Some(3);
        }),
        decode_edited(|p| node(p, BODY).scope = Some(START)),
    ]
    .into_iter()
    .map(|r| r.map(|_| ()).unwrap_err().to_string())
    .collect();
    expect![[r#"
        `graph.edges[3].target` is 12, but there are only 12 nodes
        `edge_tiers[2]` is 9, which is not a known Tier (0 means the sender left it unset; larger values may come from a newer peer)
        `node_group` has 11 entries, but it needs one per node and the graph has 12
        node 0 is listed in both `groups[0].nodes` and `groups[1].nodes`; every node must be in exactly one group
        `graph.edges[3].case` is 3, but its source, node 1, is a switch with 2 case(s); the case must be at most 2 (the default)
        `graph.nodes[7].scope` is node 0, a task node; it must be a foreach node"#]]
    .assert_eq(&messages.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Untrusted bytes never panic
// ---------------------------------------------------------------------------------------------

mod fuzz {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;

    /// Decodes bytes as a plan and converts it. Must never panic; when the conversion accepts
    /// the plan, encoding the result must give back the same message (nothing lost, nothing
    /// invented), and the plan must be indexable by every node and edge.
    fn check(bytes: &[u8]) {
        if let Ok(p) = pb::Plan::decode(bytes) {
            check_message(&p);
        }
    }

    fn check_message(p: &pb::Plan) {
        if let Ok((wf, plan, cluster)) = plan_from_proto(p) {
            assert_eq!(&plan_to_proto(&wf, &plan, &cluster), p);
            for n in wf.graph.node_indices() {
                assert!((plan.worker_of(n) as usize) < cluster.workers.len());
            }
            for e in wf.graph.edge_indices() {
                let _ = plan.tier(e);
            }
        }
    }

    /// Mostly a valid node index (`0..n`), sometimes anything.
    fn index(n: u32) -> impl Strategy<Value = u32> {
        prop_oneof![19 => 0..n.max(1), 1 => any::<u32>()]
    }

    /// Mostly known enum values, sometimes unspecified or unknown.
    fn enum_value(known: i32) -> impl Strategy<Value = i32> {
        prop_oneof![38 => 1..=known, 1 => Just(0), 1 => any::<i32>()]
    }

    fn data_source(n: u32) -> impl Strategy<Value = pb::DataSource> {
        use pb::data_source::Source;
        prop_oneof![
            4 => "[ab]".prop_map(Source::Input),
            4 => (index(n), "[ab]")
                .prop_map(|(node, output)| Source::Output(pb::NodeOutput { node, output })),
            1 => index(n).prop_map(Source::Item),
            1 => index(n).prop_map(Source::Index),
        ]
        .prop_map(|s| pb::DataSource { source: Some(s) })
    }

    fn kind(n: u32) -> impl Strategy<Value = pb::node::Kind> {
        use pb::node::Kind;
        let jitter = prop_oneof![19 => 0.0f64..=1.0, 1 => any::<f64>()];
        prop_oneof![
            3 => (prop::collection::vec(data_source(n), 0..3), enum_value(3), jitter).prop_map(
                |(sources, isolation, jitter)| {
                    Kind::Task(pb::Task {
                        function: "f".into(),
                        spec: Some(pb::FunctionSpec {
                            retry: Some(pb::Retry {
                                attempts: 1,
                                backoff_ms: 10,
                                jitter,
                                on: Vec::new(),
                            }),
                            isolation,
                            runtime_ms: 1.0,
                            ..Default::default()
                        }),
                        inputs: vec![pb::InputBinding { name: "in".into(), sources }],
                    })
                }
            ),
            1 => (0usize..3).prop_map(|cases| Kind::Switch(pb::Switch {
                cases: (0..cases)
                    .map(|i| pb::Case { condition: format!("c{i}"), line: 1, col: 1 })
                    .collect(),
            })),
            1 => (data_source(n), index(n)).prop_map(|(over, collect)| {
                Kind::Foreach(pb::Foreach { over: Some(over), max_concurrency: 2, width: 3, collect })
            }),
            2 => enum_value(4).prop_map(Kind::Join),
        ]
    }

    fn node(n: u32) -> impl Strategy<Value = pb::Node> {
        (prop::option::weighted(0.1, index(n)), kind(n)).prop_map(|(scope, kind)| pb::Node {
            name: String::new(), // unique names are filled in by `plan()`
            line: 1,
            col: 1,
            scope,
            kind: Some(kind),
        })
    }

    fn edge(n: u32) -> impl Strategy<Value = pb::Edge> {
        let forward = prop::bool::weighted(0.9);
        (
            index(n),
            index(n),
            forward,
            any::<bool>(),
            prop::option::weighted(0.2, 0u32..4),
        )
            .prop_map(|(a, b, forward, control, case)| {
                // Mostly forward edges, so that many graphs are acyclic.
                let (source, target) = if !forward || a <= b { (a, b) } else { (b, a) };
                pb::Edge {
                    source,
                    target,
                    control,
                    case,
                    data: vec![],
                    bytes: 8,
                    on_failure: control && case.is_none() && forward,
                }
            })
    }

    /// Random plans of up to 7 nodes, often valid: groups follow `node_group` unless perturbed.
    fn plan() -> impl Strategy<Value = pb::Plan> {
        (0u32..8).prop_flat_map(|n| {
            let parts = (
                prop::collection::vec(node(n), n as usize),
                prop::collection::vec(edge(n), 0..8),
                1u32..3,
                prop::collection::vec(0u32..3, n as usize),
                prop::collection::vec(enum_value(4), 8),
                prop::bool::weighted(0.1),
                enum_value(2),
                prop::collection::vec(index(n), 0..3),
            );
            (parts, prop::bool::weighted(0.8)).prop_map(|(parts, repair)| {
                let mut p = plan_from_parts(parts);
                if repair {
                    repair_references(&mut p);
                }
                p
            })
        })
    }

    /// Points most references that need a particular kind of node at such a node, so that more
    /// random plans get past validation (out-of-range indices are left alone).
    fn repair_references(p: &mut pb::Plan) {
        use pb::data_source::Source;
        use pb::node::Kind;
        let Some(g) = p.graph.as_mut() else { return };
        let kind_of = |nodes: &[pb::Node], i: u32| nodes.get(i as usize).and_then(|n| n.kind.clone());
        let is_foreach = |nodes: &[pb::Node], i: u32| matches!(kind_of(nodes, i), Some(Kind::Foreach(_)));
        let first_join = (0u32..)
            .zip(&g.nodes)
            .find(|(_, n)| matches!(n.kind, Some(Kind::Join(_))));
        let first_join = first_join.map(|(i, _)| i);
        let snapshot = g.nodes.clone();
        let fix_source = |s: &mut pb::DataSource| {
            if let Some(Source::Item(i) | Source::Index(i)) = s.source
                && !is_foreach(&snapshot, i)
            {
                s.source = Some(Source::Input("a".into()));
            }
        };
        for (i, node) in (0u32..).zip(g.nodes.iter_mut()) {
            if node.scope.is_some_and(|s| s == i || !is_foreach(&snapshot, s)) {
                node.scope = None;
            }
            match &mut node.kind {
                Some(Kind::Task(t)) => t.inputs.iter_mut().flat_map(|b| &mut b.sources).for_each(fix_source),
                Some(Kind::Foreach(f)) => {
                    f.over.iter_mut().for_each(fix_source);
                    if let Some(j) = first_join {
                        f.collect = j;
                    }
                }
                _ => {}
            }
        }
        g.edges.retain(|e| e.source != e.target);
        p.edge_tiers.truncate(g.edges.len());
        for e in &mut g.edges {
            e.case = match (kind_of(&snapshot, e.source), e.case) {
                (Some(Kind::Switch(s)), Some(c)) => Some(c.min(s.cases.len() as u32)),
                _ => None,
            };
        }
    }

    type Parts = (
        Vec<pb::Node>,
        Vec<pb::Edge>,
        u32,
        Vec<u32>,
        Vec<i32>,
        bool,
        i32,
        Vec<u32>,
    );

    fn plan_from_parts((mut nodes, edges, workers, node_group, tiers, perturb, mode, path): Parts) -> pb::Plan {
        for (i, n) in nodes.iter_mut().enumerate() {
            n.name = format!("n{i}");
        }
        let group_count = node_group.iter().copied().max().map_or(0, |m| m + 1);
        let mut groups: Vec<pb::Group> = (0..group_count)
            .map(|g| pb::Group {
                id: g,
                worker: g % workers,
                nodes: (0u32..)
                    .zip(&node_group)
                    .filter(|&(_, &ng)| ng == g)
                    .map(|(n, _)| n)
                    .collect(),
                ..Default::default()
            })
            .collect();
        if perturb && let Some(g) = groups.last_mut() {
            g.nodes.push(0);
        }
        let edge_tiers = tiers[..edges.len()].to_vec();
        pb::Plan {
            workflow: "wf".into(),
            graph: Some(pb::WorkflowGraph {
                name: "wf".into(),
                format: pb::SourceFormat::Native as i32,
                nodes,
                edges,
                ..Default::default()
            }),
            version: 1,
            mode,
            workers: (0..workers)
                .map(|w| pb::Worker {
                    name: format!("w{w}"),
                    slots: 4,
                    ..Default::default()
                })
                .collect(),
            groups,
            node_group,
            edge_tiers,
            critical_path: Some(pb::CriticalPath {
                nodes: path,
                cost_ms: 1.0,
            }),
            merges: 0,
            overcommitted: false,
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
            check(&bytes);
        }

        #[test]
        fn edited_encodings_never_panic(
            edits in prop::collection::vec((any::<Index>(), any::<u8>()), 1..6),
            cut in any::<Index>(),
        ) {
            let mut bytes = sample_proto().encode_to_vec();
            for (at, byte) in edits {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            check(&bytes);
            // A truncated message too.
            let end = cut.index(bytes.len() + 1);
            check(&bytes[..end]);
        }

        #[test]
        fn random_plans_never_panic_and_valid_ones_round_trip(p in plan()) {
            check_message(&p);
            check(&p.encode_to_vec());
        }
    }
}
