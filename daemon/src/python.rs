//! Functions in Python: the commands that serve them (`python -m faasflow.serve`, from the
//! `faasflow` package in `sdk/python`), and what a failed check of one means.
//!
//! A Python instance is a pack like any other (the same handshake, rings and arena): its
//! functions are named by their handlers (`module:function`), and its command lists them with
//! their code directory and required modules. Functions in Python of one plan group with
//! `isolation: thread` whose code is in the same directory share one command, so they share
//! the pool, and so the interpreters, of their group: they run as threads of one process and
//! hand objects over in place. The others get a command, and so a pool, each.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use faasflow_core::dag::{Isolation, NodeId, Workflow};
use faasflow_core::plan::Plan;

use crate::config::DaemonConfig;
use crate::pool::{ListError, PackCommand, Runner};

pub(crate) use crate::pool::PYTHON_PACK as PACK;

/// The command that serves each of `wf`'s functions in Python among the task nodes `local`,
/// with interpreter `python`.
pub(crate) fn commands(
    wf: &Workflow,
    plan: &Plan,
    local: &HashSet<NodeId>,
    python: &Path,
) -> HashMap<NodeId, PackCommand> {
    // (group, code, None) for those that share; (0, code, Some(node)) for the others.
    type Key = (u32, String, Option<usize>);
    /// Handlers, required modules, nodes.
    type Shared = (BTreeSet<String>, BTreeSet<String>, Vec<NodeId>);
    let mut shared: BTreeMap<Key, Shared> = BTreeMap::new();
    for n in wf.graph.node_indices() {
        if !local.contains(&n) {
            continue;
        }
        let Some(task) = wf.graph[n].task() else { continue };
        let Some(py) = &task.spec.python else { continue };
        // FaaSFlow's functions are loaded by the path of their main.py, whatever their code.
        let code = if py.faasflow_v1 { String::new() } else { py.code.clone() };
        let key = match task.spec.isolation {
            Isolation::Thread => (plan.node_group.get(n.index()).copied().unwrap_or(0), code, None),
            Isolation::Process | Isolation::Container => (0, code, Some(n.index())),
        };
        let (handlers, requirements, nodes) = shared.entry(key).or_default();
        handlers.insert(if py.faasflow_v1 {
            format!("{FAASFLOW_V1}{}", py.served_as())
        } else {
            py.handler.clone()
        });
        requirements.extend(py.requirements.iter().cloned());
        nodes.push(n);
    }
    let mut out = HashMap::new();
    for ((_, code, _), (handlers, requirements, nodes)) in shared {
        let command = command(python, &code, &requirements, &handlers);
        for n in nodes {
            out.insert(n, command.clone());
        }
    }
    out
}

/// The shape of a pool of Python instances whose group may run `at_once` calls at once
/// (Faastlane's rule, [`faasflow_core::faastlane`]): `(calls per instance, most instances, warm
/// instances)`. Each instance runs one call at a time (one interpreter runs one thread at a
/// time), calls in sequence reuse a warm instance, and calls at once go to other instances, up
/// to the worker's cores; that many are kept warm.
pub(crate) fn shape(config: &DaemonConfig, at_once: u32) -> (u32, usize, usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let max = config.max_instances.min(cores).max(1);
    let warm = if config.min_instances == 0 {
        0
    } else {
        (at_once as usize).min(cores).max(config.min_instances).min(max)
    };
    (1, max, warm)
}

/// How a FaaSFlow function's `main.py` is named among the handlers of a command (the argument
/// `--faasflow-v1 PATH` when the command is made).
const FAASFLOW_V1: &str = "\0faasflow-v1:";

/// `PYTHON -m faasflow.serve --pack python [--code CODE] [--require M]… [HANDLER | --faasflow-v1
/// PATH]…`.
fn command<'a>(
    python: &Path,
    code: &str,
    requirements: impl IntoIterator<Item = &'a String>,
    handlers: impl IntoIterator<Item = &'a String>,
) -> PackCommand {
    let mut args = vec![
        "-m".to_owned(),
        "faasflow.serve".to_owned(),
        "--pack".to_owned(),
        PACK.to_owned(),
    ];
    if !code.is_empty() {
        args.extend(["--code".to_owned(), code.to_owned()]);
    }
    for r in requirements {
        args.extend(["--require".to_owned(), r.clone()]);
    }
    for h in handlers {
        match h.strip_prefix(FAASFLOW_V1) {
            Some(path) => args.extend(["--faasflow-v1".to_owned(), path.to_owned()]),
            None => args.push(h.clone()),
        }
    }
    PackCommand {
        program: python.to_path_buf(),
        args,
    }
}

/// What a failed check (`--list`) of a Python command means, for its user: the interpreter
/// missing, the package missing, or what the package said (a handler that does not exist, an
/// import or syntax error, a missing requirement).
pub(crate) fn explain(runner: &Runner, e: &ListError) -> String {
    let python = match runner {
        Runner::Process(command) => command.program.display().to_string(),
        Runner::Container(run) => format!("of image `{}`", run.image),
    };
    match e {
        ListError::Run { cause, .. } => format!(
            "the daemon's Python interpreter `{python}` cannot be run ({cause}): install Python 3.9 or later \
             with the faasflow package, or start the daemon with --python PATH"
        ),
        ListError::Failed { stderr, how, .. }
            if stderr.contains("No module named faasflow") || stderr.contains("No module named 'faasflow'") =>
        {
            format!(
                "the faasflow package is not installed for the daemon's Python interpreter `{python}` ({how}): \
                 install it into that interpreter (`pip install sdk/python`, or the wheel `cargo xtask python` \
                 builds), or start the daemon with --python naming one that has it"
            )
        }
        ListError::Failed { stderr, .. } if !stderr.is_empty() => stderr.clone(),
        ListError::Silent { timeout, .. } => format!(
            "checking its functions (`{python} -m faasflow.serve --list`) took longer than {timeout:?}: does \
             importing its module take that long?"
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(src: &str) -> (Workflow, Plan) {
        let wf = faasflow_planner::load::load_str_in(src, "t.yaml", "t", Some(Path::new("/srv/fns")))
            .expect("valid")
            .workflow;
        let cluster = faasflow_core::plan::ClusterView::uniform(1, 16);
        let plan = faasflow_planner::partition::partition(&wf, &cluster, &Default::default()).expect("plan");
        (wf, plan)
    }

    #[test]
    fn functions_of_a_group_share_a_command_unless_isolated() {
        let (wf, plan) = plan_of(
            "name: t
functions:
  a: {language: python, handler: 'words:a', requirements: [json]}
  b: {language: python, handler: 'words:b', requirements: [re]}
  c: {language: python, handler: 'words:c', isolation: process}
  d: {language: python, handler: 'other:d', code: lib}
steps:
  - task: a
  - task: b
  - task: c
  - task: d
",
        );
        let local: HashSet<NodeId> = wf.graph.node_indices().collect();
        let cmds = commands(&wf, &plan, &local, Path::new("/usr/bin/python3"));
        let of = |name: &str| {
            let n = wf
                .graph
                .node_indices()
                .find(|&n| wf.graph[n].name == name)
                .expect("a step");
            cmds.get(&n).cloned().expect("a command")
        };
        assert_eq!(of("a"), of("b"), "one group, one code directory: one interpreter");
        assert_eq!(
            of("a").args,
            [
                "-m",
                "faasflow.serve",
                "--pack",
                "python",
                "--code",
                "/srv/fns",
                "--require",
                "json",
                "--require",
                "re",
                "words:a",
                "words:b"
            ]
        );
        assert_eq!(of("c").args.last().map(String::as_str), Some("words:c"));
        assert!(
            !of("c").args.contains(&"words:a".to_owned()),
            "process isolation: alone"
        );
        assert!(of("d").args.contains(&"/srv/fns/lib".to_owned()), "{:?}", of("d").args);
        assert_ne!(of("a"), of("d"), "another code directory: another interpreter");
        assert_eq!(of("a").program, Path::new("/usr/bin/python3"));
    }

    #[test]
    fn a_missing_interpreter_or_package_says_what_to_do() {
        let cmd = command(Path::new("/no/python"), "/srv", [], []);
        let run = ListError::Run {
            program: "/no/python".into(),
            cause: "No such file or directory (os error 2)".into(),
        };
        let text = explain(&Runner::Process(cmd.clone()), &run);
        assert!(
            text.contains("`/no/python` cannot be run") && text.contains("--python PATH"),
            "{text}"
        );
        let missing = ListError::Failed {
            program: "/no/python".into(),
            how: "exited with status 1".into(),
            stderr: "/no/python: Error while finding module specification for 'faasflow.serve' \
                     (ModuleNotFoundError: No module named 'faasflow')"
                .into(),
        };
        let text = explain(&Runner::Process(cmd.clone()), &missing);
        assert!(
            text.contains("faasflow package is not installed") && text.contains("pip install"),
            "{text}"
        );
        let said = ListError::Failed {
            program: "/no/python".into(),
            how: "exited with status 1".into(),
            stderr: "handler `words:cnt`: module `words` has no function `cnt`".into(),
        };
        assert_eq!(
            explain(&Runner::Process(cmd.clone()), &said),
            "handler `words:cnt`: module `words` has no function `cnt`"
        );
    }
}
