//! Proto confinement: the generated proto types (`faasflow_proto`, `pb::`) appear only in the
//! proto crate, in faasflow-rpc (which converts them to and from the crates' own types) and in
//! the two server adapters; everywhere else code uses its own types.

use super::source::Workspace;
use super::{Findings, lines_naming};

/// Files that still use the generated types outside the places allowed, and why. This list
/// must shrink to empty: move the conversions into faasflow-rpc and the gRPC handling into the
/// server adapter of the crate.
pub(crate) const KNOWN: &[(&str, &str)] = &[];

/// Where the generated types belong: the proto crate, the conversion crate and the server
/// adapters of the planner and the daemon.
const ALLOWED: [&str; 4] = ["proto", "rpc", "control/src/rpc.rs", "daemon/src/service.rs"];

/// How code names the generated types: the crate, or its usual alias `pb`.
const PATTERNS: [&str; 2] = ["faasflow_proto", "pb::"];

/// Whether `path` may use the generated types: an allowed place, or test code (fuzz/, and any
/// tests/, benches/ or examples/ directory).
fn allowed(path: &str) -> bool {
    let test_dir = path
        .split('/')
        .any(|part| ["tests", "benches", "examples"].contains(&part));
    test_dir || path.starts_with("fuzz/") || ALLOWED.iter().any(|a| super::source::under(path, a))
}

pub(crate) fn check(ws: &Workspace, known: &[(&str, &str)], findings: &mut Findings) {
    let sources = ws.sources.iter().filter(|s| !allowed(&s.path));
    let violations = lines_naming(sources, &PATTERNS, |path, n, p| {
        format!(
            "{path}:{n}: `{p}`: the generated proto types belong in proto/, rpc/ and the server adapters \
             (control/src/rpc.rs, daemon/src/service.rs); use the crate's own types and convert in faasflow-rpc"
        )
    });
    findings.add("proto", violations, known);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(files: &[(&str, &str)], known: &[(&str, &str)]) -> Findings {
        crate::tidy::run_check(check, files, known)
    }

    #[test]
    fn generated_types_outside_their_places_fail() {
        let f = run(
            &[
                (
                    "control/src/master.rs",
                    "fn f() {\n    let r = pb::Execute::default();\n}\n",
                ),
                ("cli/src/local.rs", "use faasflow_proto::v1 as pb;\n"),
            ],
            &[],
        );
        assert_eq!(f.failures.len(), 2, "{f:?}");
        assert!(
            f.failures[0].starts_with("cli/src/local.rs:1: `faasflow_proto`: "),
            "{f:?}"
        );
        assert!(f.failures[1].starts_with("control/src/master.rs:2: `pb::`: "), "{f:?}");
    }

    #[test]
    fn allowed_places_tests_and_text_pass() {
        let f = run(
            &[
                (
                    "proto/src/lib.rs",
                    "pub mod v1 { pub struct Plan; }\nuse v1 as pb; fn f(_: pb::Plan) {}\n",
                ),
                ("rpc/src/convert.rs", "use faasflow_proto::v1 as pb;\n"),
                ("control/src/rpc.rs", "use faasflow_proto::v1 as pb;\n"),
                ("daemon/src/service.rs", "use faasflow_proto::v1 as pb;\n"),
                ("daemon/tests/peer.rs", "use faasflow_proto::v1 as pb;\n"),
                ("fuzz/fuzz_targets/plan_proto.rs", "use faasflow_proto::v1 as pb;\n"),
                (
                    "daemon/src/runtime.rs",
                    "// pb::Plan stays in service.rs\nconst S: &str = \"faasflow_proto\";\n\
                     #[cfg(test)]\nmod tests {\n    use faasflow_proto::v1 as pb;\n}\n",
                ),
            ],
            &[],
        );
        assert!(f.failures.is_empty(), "{f:?}");
    }

    #[test]
    fn an_exempt_file_is_a_note_and_a_clean_one_must_leave_the_list() {
        let files = [("control/src/master.rs", "fn f(_: pb::Execute) {}\n")];
        let f = run(&files, &[("control/src/master.rs", "not moved yet")]);
        assert!(f.failures.is_empty(), "{f:?}");
        assert_eq!(f.notes.len(), 1);
        let f = run(
            &[("control/src/master.rs", "fn f() {}\n")],
            &[("control/src/master.rs", "not moved yet")],
        );
        assert_eq!(f.failures.len(), 1, "{f:?}");
        assert!(f.failures[0].contains("no longer violates"), "{f:?}");
    }
}
