//! Errors of the workflow front end (YAML, WDL, FaaSFlow import, compiler) and of the
//! partitioner.
//!
//! A [`WdlError`] always says where (file, line, column), what was wrong, what was expected
//! and, when there is something useful to say, what to do about it. Its `Display` is meant to
//! be read by someone who has never seen the code:
//!
//! ```text
//! examples/bad.yaml:12:15: error: unknown function `cout`
//!   expected: one of the functions declared under `functions:` (count, merge, start)
//!   hint: did you mean `count`?
//! ```

use std::fmt;

pub use faasflow_core::Pos;
pub use faasflow_core::text::list_names;

/// The kind of a front-end error, one per thing that can be wrong with a workflow file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file is not readable YAML (syntax error, bad indentation, unknown alias).
    Yaml,
    /// A value has the wrong type (a string where a number is needed, and so on).
    Type,
    /// A key that this form of workflow does not know.
    UnknownKey,
    /// A required key is missing.
    MissingKey,
    /// A task calls a function that is not declared.
    UnknownFunction,
    /// Two steps (or functions) share one name.
    DuplicateName,
    /// The steps depend on each other in a circle.
    Cycle,
    /// A reference to a step, output or input that does not exist.
    DanglingReference,
    /// `foreach` iterates over something that is not a list.
    ForeachOverNonList,
    /// A switch has no `default` branch.
    SwitchWithoutDefault,
    /// A switch condition is not a valid CEL expression, or reads what it may not.
    Condition,
    /// A FaaSFlow construct that cannot be imported.
    Unsupported,
    /// The file could not be read from disk.
    Io,
}

impl ErrorKind {
    /// A stable short name, used in tests and machine-readable output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Yaml => "yaml",
            ErrorKind::Type => "type",
            ErrorKind::UnknownKey => "unknown-key",
            ErrorKind::MissingKey => "missing-key",
            ErrorKind::UnknownFunction => "unknown-function",
            ErrorKind::DuplicateName => "duplicate-name",
            ErrorKind::Cycle => "cycle",
            ErrorKind::DanglingReference => "dangling-reference",
            ErrorKind::ForeachOverNonList => "foreach-over-non-list",
            ErrorKind::SwitchWithoutDefault => "switch-without-default",
            ErrorKind::Condition => "condition",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Io => "io",
        }
    }
}

/// An error in a workflow file, with its place, what was expected and a hint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct WdlError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// The file, as the user named it.
    pub file: String,
    /// Where in the file.
    pub pos: Pos,
    /// One line saying what is wrong.
    pub message: String,
    /// What would have been correct here.
    pub expected: Option<String>,
    /// What to do about it.
    pub hint: Option<String>,
}

impl WdlError {
    /// Creates an error with no file name yet (filled in by [`WdlError::in_file`]).
    pub fn new(kind: ErrorKind, pos: Pos, message: impl Into<String>) -> Self {
        WdlError {
            kind,
            file: String::new(),
            pos,
            message: message.into(),
            expected: None,
            hint: None,
        }
    }

    /// Adds what was expected.
    pub fn expected(mut self, expected: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Sets the file name if none is set yet.
    pub fn in_file(mut self, file: &str) -> Self {
        if self.file.is_empty() {
            self.file = file.to_owned();
        }
        self
    }
}

impl fmt::Display for WdlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = if self.file.is_empty() { "<workflow>" } else { &self.file };
        if self.pos.line == 0 {
            write!(f, "{file}: error: {}", self.message)?;
        } else {
            write!(f, "{file}:{}: error: {}", self.pos, self.message)?;
        }
        if let Some(expected) = &self.expected {
            write!(f, "\n  expected: {expected}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// The closest candidate to `name` by edit distance, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(name, c);
        let limit = (name.chars().count().max(c.chars().count()) / 3).max(1);
        if d <= limit && best.is_none_or(|(bd, bc)| (d, c) < (bd, bc)) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Edit distance where swapping two neighbouring characters counts as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("cout", ["count", "merge", "start"]), Some("count"));
        assert_eq!(did_you_mean("xyz", ["count", "merge", "start"]), None);
        assert_eq!(did_you_mean("taks", ["task", "sequence"]), Some("task"));
        assert_eq!(did_you_mean("strat", ["count", "start"]), Some("start"));
    }

    #[test]
    fn display_has_place_expectation_and_hint() {
        let e = WdlError::new(ErrorKind::UnknownFunction, Pos::new(3, 9), "unknown function `cout`")
            .expected("a declared function")
            .hint("did you mean `count`?")
            .in_file("wf.yaml");
        assert_eq!(
            e.to_string(),
            "wf.yaml:3:9: error: unknown function `cout`\n  expected: a declared function\n  hint: did you mean `count`?"
        );
    }
}
