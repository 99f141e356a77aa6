//! Small helpers for messages meant to be read by people.

/// "a, b, c" (at most `max` names, then "…").
pub fn list_names<'a>(names: impl IntoIterator<Item = &'a str>, max: usize) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    let mut out = names.iter().take(max).copied().collect::<Vec<_>>().join(", ");
    if names.len() > max {
        out.push_str(&format!(", … ({} in all)", names.len()));
    }
    if out.is_empty() {
        out.push_str("none");
    }
    out
}
