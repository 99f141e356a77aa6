//! An instance's stderr is its log: a line about a call starts with the call's tag
//! (`[call N] `), written by the instance ([`tag`]) and read by the daemon ([`untag`]), which
//! logs the line with that call's function and invocation.

/// The tag that ties a line to call `call`.
pub fn tag(call: u64) -> String {
    format!("[call {call}] ")
}

/// The call a line names with its tag, and the rest of the line (the whole line when it has
/// no tag).
pub fn untag(line: &str) -> (Option<u64>, &str) {
    let parsed = line
        .strip_prefix("[call ")
        .and_then(|rest| rest.split_once("] "))
        .and_then(|(n, rest)| Some((n.parse().ok()?, rest)));
    match parsed {
        Some((call, rest)) => (Some(call), rest),
        None => (None, line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_names_its_call_and_anything_else_is_left_alone() {
        assert_eq!(
            untag("[call 12] thread 'x' panicked"),
            (Some(12), "thread 'x' panicked")
        );
        assert_eq!(untag(&format!("{}x", tag(7))), (Some(7), "x"));
        assert_eq!(untag("[call x] no"), (None, "[call x] no"));
        assert_eq!(untag("plain"), (None, "plain"));
    }
}
