//! Positions in source files, carried by the DAG so that runtime errors can point at the
//! step that caused them.

use std::fmt;

/// A position in a source file. Lines and columns are 1-based and count characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub col: u32,
}

impl Pos {
    /// A position that is not known (line 0).
    pub const UNKNOWN: Pos = Pos { line: 0, col: 0 };

    /// Creates a position from a 1-based line and column.
    pub fn new(line: u32, col: u32) -> Self {
        Pos { line, col }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}
