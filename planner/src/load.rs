//! Loading a workflow file of any supported form.
//!
//! The form is recognised from the top-level keys: native WDL has `steps`; FaaSFlow's flat
//! form has a list of `functions` (or `global_input`/`global_output`); FaaSFlow's hierarchical
//! form has a top-level `type`. This is the only module of the planner that reads files.

use std::io::Read as _;
use std::path::Path;

use crate::compile::compile;
use crate::error::{ErrorKind, Pos, WdlError};
use crate::import::{Imported, flat, hier};
use crate::wdl;
use crate::yaml::{self, Value, key_text};
use faasflow_core::dag::{PythonFunction, SourceFormat, Workflow};

/// Largest workflow file accepted, bytes.
pub const MAX_FILE_BYTES: usize = 32 << 20;

/// A loaded workflow and the warnings raised while loading it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The compiled workflow.
    pub workflow: Workflow,
    /// Warnings (something ignored or guessed), each with its place.
    pub warnings: Vec<WdlError>,
}

/// Recognises the form of a parsed document.
pub fn detect(root: &yaml::Yaml) -> Option<SourceFormat> {
    let Value::Map(entries) = &root.value else {
        return None;
    };
    let has = |k: &str| entries.iter().any(|(key, _)| key_text(key) == Some(k));
    let seq = |k: &str| {
        entries
            .iter()
            .any(|(key, v)| key_text(key) == Some(k) && matches!(v.value, Value::Seq(_)))
    };
    let map = |k: &str| {
        entries
            .iter()
            .any(|(key, v)| key_text(key) == Some(k) && matches!(v.value, Value::Map(_)))
    };
    if (has("steps") || map("functions")) && !has("type") {
        Some(SourceFormat::Native)
    } else if seq("functions") || seq("fuctions") || has("global_input") || has("global_output") {
        Some(SourceFormat::FaasflowFlat)
    } else if has("type") {
        Some(SourceFormat::FaasflowHierarchical)
    } else {
        None
    }
}

/// Loads workflow text. `file` names it in messages; `default_name` names FaaSFlow workflows,
/// whose files carry no name of their own. Text loaded this way has no directory: a function
/// in Python must give its `code` as an absolute directory (see [`load_str_in`]).
pub fn load_str(text: &str, file: &str, default_name: &str) -> Result<Loaded, WdlError> {
    load_str_in(text, file, default_name, None)
}

/// [`load_str`] for the text of a file in directory `dir` (absolute): the `code` of a function
/// in Python is relative to it, and is `dir` itself when not given.
pub fn load_str_in(text: &str, file: &str, default_name: &str, dir: Option<&Path>) -> Result<Loaded, WdlError> {
    load_inner(text, default_name, dir)
        .map_err(|e| e.in_file(file))
        .map(|mut l| {
            l.warnings = l.warnings.into_iter().map(|w| w.in_file(file)).collect();
            l
        })
}

fn load_inner(text: &str, default_name: &str, dir: Option<&Path>) -> Result<Loaded, WdlError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(WdlError::new(
            ErrorKind::Io,
            Pos::UNKNOWN,
            format!(
                "the workflow is larger than {} MiB, the limit for workflow files",
                MAX_FILE_BYTES >> 20
            ),
        ));
    }
    let root = yaml::parse(text)?;
    match detect(&root) {
        Some(SourceFormat::Native) => {
            let mut doc = wdl::decode(&root)?;
            resolve_code(&mut doc, dir)?;
            Ok(Loaded { workflow: compile(&doc, SourceFormat::Native)?, warnings: Vec::new() })
        }
        Some(SourceFormat::FaasflowFlat) => {
            let mut i = flat::import(&root, default_name)?;
            if let Some(dir) = dir {
                find_faasflow_functions(&mut i.workflow, dir);
            }
            imported(i)
        }
        Some(SourceFormat::FaasflowHierarchical) => imported(hier::import(&root, default_name)?),
        None => Err(WdlError::new(
            ErrorKind::MissingKey,
            root.pos,
            format!("this does not look like a workflow (found {} at the top)", root.describe()),
        )
        .expected("faasflow WDL (`name`, `functions`, `steps`), or a FaaSFlow workflow.yaml (`type`) or flat_workflow.yaml (`functions` list)")
        .hint("see docs/wdl.md for the format")),
    }
}

/// Makes the `code` of every function in Python absolute: relative to `dir`, or `dir` itself
/// when not given. Without `dir` (text with no file), only an absolute `code` will do.
fn resolve_code(doc: &mut wdl::Document, dir: Option<&Path>) -> Result<(), WdlError> {
    for f in &mut doc.functions {
        let Some(py) = f.spec.python.as_mut() else { continue };
        if py.code.starts_with('/') {
            continue;
        }
        let Some(dir) = dir else {
            let given = if py.code.is_empty() {
                "gives no `code`".to_owned()
            } else {
                format!("gives `code: {}`, a relative directory", py.code)
            };
            return Err(WdlError::new(
                ErrorKind::Type,
                f.name.1,
                format!(
                    "function `{}` is in Python and {given}, but this workflow was sent without the directory of its file",
                    f.name.0
                ),
            )
            .expected("an absolute `code` directory")
            .hint("deploy it from its file (`faasflow deploy FILE` sends the file's directory), or give `code: /absolute/dir`"));
        };
        let code = if py.code.is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(&py.code)
        };
        py.code = code.to_string_lossy().into_owned();
    }
    Ok(())
}

/// FaaSFlow's own functions: a task whose `source` directory beside the workflow file holds a
/// `main.py` runs that file, unmodified, in Python; the others keep the synthetic body.
fn find_faasflow_functions(wf: &mut Workflow, dir: &Path) {
    for n in wf.graph.node_indices() {
        let Some(task) = wf.graph[n].task_mut() else { continue };
        let code = dir.join(&task.function);
        if code.join("main.py").is_file() {
            task.spec.python = Some(Box::new(PythonFunction {
                handler: "main:main".to_owned(),
                code: code.to_string_lossy().into_owned(),
                requirements: Vec::new(),
                faasflow_v1: true,
            }));
        }
    }
}

fn imported(i: Imported) -> Result<Loaded, WdlError> {
    Ok(Loaded {
        workflow: i.workflow,
        warnings: i.warnings,
    })
}

/// Reads and loads a workflow file. FaaSFlow files are named after their directory
/// (`benchmark/video/flat_workflow.yaml` → `video`).
pub fn load_file(path: &Path) -> Result<Loaded, WdlError> {
    let text = read_file(path)?;
    let dir = file_dir(path);
    load_str_in(&text, &path.display().to_string(), &default_name(path), dir.as_deref())
}

/// The absolute directory of workflow file `path` (Python functions' `code` is relative to it),
/// when the working directory can be read.
pub fn file_dir(path: &Path) -> Option<std::path::PathBuf> {
    let abs = std::path::absolute(path).ok()?;
    Some(abs.parent()?.to_path_buf())
}

/// Reads a workflow file as text: at most [`MAX_FILE_BYTES`] (an endless file such as
/// `/dev/zero` or a pipe is refused once past the limit), UTF-8. Errors name the file.
pub fn read_file(path: &Path) -> Result<String, WdlError> {
    let shown = path.display().to_string();
    let io_err = |e: std::io::Error| {
        WdlError::new(
            ErrorKind::Io,
            Pos::UNKNOWN,
            format!("cannot read the workflow file: {e}"),
        )
        .hint("check the path and that the file is UTF-8 text")
        .in_file(&shown)
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    if file.metadata().map_err(io_err)?.is_dir() {
        return Err(
            WdlError::new(ErrorKind::Io, Pos::UNKNOWN, "this is a directory, not a workflow file")
                .hint("name the YAML file itself, e.g. DIR/flat_workflow.yaml")
                .in_file(&shown),
        );
    }
    // Read at most one byte more than the limit, so that endless files (/dev/zero) stop.
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(WdlError::new(
            ErrorKind::Io,
            Pos::UNKNOWN,
            format!(
                "the file is larger than {} MiB, the limit for workflow files",
                MAX_FILE_BYTES >> 20
            ),
        )
        .hint("name a workflow file (a device or a pipe never ends); split a workflow this large")
        .in_file(&shown));
    }
    String::from_utf8(bytes).map_err(|e| {
        let (line, col) = line_col(&e.as_bytes()[..e.utf8_error().valid_up_to()]);
        WdlError::new(ErrorKind::Yaml, Pos::new(line, col), "the file is not UTF-8 text")
            .hint("save it as UTF-8")
            .in_file(&shown)
    })
}

/// Line and column just after `prefix`.
fn line_col(prefix: &[u8]) -> (u32, u32) {
    let text = String::from_utf8_lossy(prefix);
    let line = text.matches('\n').count() as u32 + 1;
    let col = text.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
    (line, col)
}

/// The name a FaaSFlow file gets: its directory's name, else its file stem.
pub fn default_name(path: &Path) -> String {
    // `flat_workflow.yaml` typed in its own directory still takes the directory's name.
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let path = path.as_path();
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("workflow");
    let generic = matches!(stem, "workflow" | "flat_workflow" | "workflow2");
    match path.parent().and_then(|p| p.file_name()).and_then(|s| s.to_str()) {
        Some(dir) if generic && stem == "workflow2" => format!("{dir}2"),
        Some(dir) if generic => dir.to_owned(),
        _ => stem.to_owned(),
    }
}
