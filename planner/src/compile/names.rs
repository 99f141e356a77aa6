//! Names of workflows, steps and functions: what a name may hold, and the messages that say
//! why one is refused.

use crate::error::{ErrorKind, Pos, WdlError};

/// Longest name (of a workflow, a step or a function) accepted, bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// Names go into logs, reports and messages: a name holds no control character (a line break
/// would forge a log line) and at most [`MAX_NAME_BYTES`]. `what` says whose name it is.
pub fn check_name(what: &str, name: &str, pos: Pos) -> Result<(), WdlError> {
    let expected = format!("a name of at most {MAX_NAME_BYTES} bytes, without control characters");
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(WdlError::new(
            ErrorKind::Type,
            pos,
            format!(
                "{what} `{}` holds a control character ({}, U+{:04X})",
                shown(name),
                c.escape_debug(),
                u32::from(c)
            ),
        )
        .expected(expected)
        .hint("remove the line break, tab or other control character"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(WdlError::new(
            ErrorKind::Type,
            pos,
            format!("{what} `{}` is {} bytes long", shown(name), name.len()),
        )
        .expected(expected)
        .hint("shorten it"));
    }
    Ok(())
}

/// The start of a name, with control characters escaped, for a message.
fn shown(name: &str) -> String {
    const SHOWN: usize = 32;
    let mut s: String = name.chars().take(SHOWN).flat_map(char::escape_debug).collect();
    if name.chars().nth(SHOWN).is_some() {
        s.push('…');
    }
    s
}

/// Step names are read back in references (`step.output`): no dots, no spaces.
pub(super) fn check_step_name(name: &str, pos: Pos) -> Result<(), WdlError> {
    check_name("the step name", name, pos)?;
    if !is_identifier(name) {
        let fixed: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let fixed = if fixed.starts_with(|c: char| c.is_ascii_digit()) {
            format!("_{fixed}")
        } else {
            fixed
        };
        return Err(WdlError::new(ErrorKind::Type, pos, format!("`{name}` cannot be a step name"))
            .expected("letters, digits and `_`, not starting with a digit, so that `<name>.<output>` can be read in references and CEL conditions")
            .hint(format!("rename it, e.g. `{fixed}`")));
    }
    Ok(())
}

/// True for names CEL reads as one identifier: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
