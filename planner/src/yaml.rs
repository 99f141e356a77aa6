//! A YAML tree that remembers where every value was written.
//!
//! Built from `saphyr-parser` events: anchors and aliases are resolved (an alias is a copy of
//! its anchored node), duplicate keys are rejected, and every node keeps its line and column so
//! that later errors can point at it. [`Fields`] reads a mapping key by key and reports unknown
//! keys with a suggestion.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use crate::error::{ErrorKind, Pos, WdlError, did_you_mean, list_names};
use crate::render::fmt_thousands;

/// Deepest nesting accepted (guards the recursive decoders against hostile input).
const MAX_DEPTH: usize = 128;
/// Most values (scalars, sequences and mappings, keys included) a document may hold, written
/// or copied through aliases: bounds the tree's memory (about 190 bytes a value, so 760 MB at
/// most). A file within [`MAX_FILE_BYTES`](crate::load::MAX_FILE_BYTES) written as
/// `faasflow generate` writes (about 8 bytes a value) is within it too.
pub const MAX_VALUES: usize = 4_000_000;
/// Most values aliases may copy (guards against "billion laughs": a few lines whose aliases
/// of aliases expand to billions of values).
pub const MAX_ALIAS_VALUES: usize = 1_000_000;

/// A YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Yaml {
    /// Where the node starts.
    pub pos: Pos,
    /// Its value.
    pub value: Value,
}

/// The value of a YAML node.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `~`, `null` or nothing.
    Null,
    /// A scalar, as written (quoted scalars are never null, numbers or booleans).
    Scalar {
        /// The text.
        text: String,
        /// True when written in quotes or as a block scalar.
        quoted: bool,
    },
    /// A sequence.
    Seq(Vec<Yaml>),
    /// A mapping, in source order.
    Map(Vec<(Yaml, Yaml)>),
}

impl Yaml {
    /// What kind of value this is, for messages ("a mapping", "the string `x`").
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Null => "nothing (null)".to_owned(),
            Value::Scalar { text, .. } => {
                let short: String = text.chars().take(40).collect();
                if short.len() < text.len() {
                    format!("`{short}…`")
                } else {
                    format!("`{short}`")
                }
            }
            Value::Seq(_) => "a list".to_owned(),
            Value::Map(_) => "a mapping".to_owned(),
        }
    }

    fn type_error(&self, expected: &str) -> WdlError {
        WdlError::new(ErrorKind::Type, self.pos, format!("found {} here", self.describe()))
            .expected(expected.to_owned())
    }

    /// True for null.
    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// The text of a scalar; `what` names what was expected.
    pub fn str(&self, what: &str) -> Result<&str, WdlError> {
        match &self.value {
            Value::Scalar { text, .. } => Ok(text),
            _ => Err(self.type_error(what)),
        }
    }

    /// A non-empty scalar used as a name.
    pub fn name(&self, what: &str) -> Result<(String, Pos), WdlError> {
        let s = self.str(what)?;
        if s.trim().is_empty() {
            return Err(self.type_error(what));
        }
        Ok((s.to_owned(), self.pos))
    }

    /// The entries of a mapping.
    pub fn map(&self, what: &str) -> Result<&[(Yaml, Yaml)], WdlError> {
        match &self.value {
            Value::Map(m) => Ok(m),
            _ => Err(self.type_error(what)),
        }
    }

    /// The items of a sequence.
    pub fn seq(&self, what: &str) -> Result<&[Yaml], WdlError> {
        match &self.value {
            Value::Seq(s) => Ok(s),
            _ => Err(self.type_error(what)),
        }
    }

    /// A sequence, or a single item taken as a sequence of one, or null as empty.
    pub fn one_or_many(&self) -> Vec<&Yaml> {
        match &self.value {
            Value::Seq(s) => s.iter().collect(),
            Value::Null => Vec::new(),
            _ => vec![self],
        }
    }

    /// A non-negative integer.
    pub fn u64(&self, what: &str) -> Result<u64, WdlError> {
        match &self.value {
            Value::Scalar { text, quoted: false } => {
                let t = text.replace('_', "");
                t.parse::<u64>().map_err(|_| {
                    let why = if t.starts_with('-') {
                        "it is negative"
                    } else if t.chars().all(|c| c.is_ascii_digit()) {
                        "it is too large"
                    } else {
                        "it is not a whole number"
                    };
                    self.type_error(what).hint(format!("`{text}` cannot be used: {why}"))
                })
            }
            _ => Err(self.type_error(what)),
        }
    }

    /// A finite number ≥ 0.
    pub fn f64(&self, what: &str) -> Result<f64, WdlError> {
        match &self.value {
            Value::Scalar { text, quoted: false } => match text.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
                _ => Err(self.type_error(what)),
            },
            _ => Err(self.type_error(what)),
        }
    }

    /// `true` or `false`.
    pub fn bool(&self, what: &str) -> Result<bool, WdlError> {
        match &self.value {
            Value::Scalar { text, quoted: false } => match text.as_str() {
                "true" | "True" | "TRUE" => Ok(true),
                "false" | "False" | "FALSE" => Ok(false),
                _ => Err(self.type_error(what)),
            },
            _ => Err(self.type_error(what)),
        }
    }

    /// A size in bytes: a number, or a number with a unit (`512`, `4KB`, `1.5MiB`, `256Mi`).
    pub fn bytes(&self, what: &str) -> Result<u64, WdlError> {
        let text = match &self.value {
            Value::Scalar { text, .. } => text.trim(),
            _ => return Err(self.type_error(what)),
        };
        parse_bytes(text).map_err(|why| {
            self.type_error(what).hint(format!(
                "`{text}` cannot be used: {why}; write bytes, or a number with a unit: 512, 64KB, 1.5MB, 2TB, 256MiB"
            ))
        })
    }

    /// A duration in milliseconds: `250ms`, `1.5s`, `2m`, or a plain number of seconds.
    pub fn duration_ms(&self, what: &str) -> Result<f64, WdlError> {
        let text = match &self.value {
            Value::Scalar { text, .. } => text.trim(),
            _ => return Err(self.type_error(what)),
        };
        parse_duration_ms(text).map_err(|why| {
            self.type_error(what).hint(format!(
                "`{text}` cannot be used: {why}; write a duration with a unit: 250ms, 1.5s, 2m, 1h (a plain number is seconds)"
            ))
        })
    }
}

/// Largest size accepted anywhere in a workflow: 1 PB.
pub const MAX_BYTES: f64 = 1e15;
/// Longest duration accepted anywhere in a workflow: 7 days, in ms.
pub const MAX_DURATION_MS: f64 = 7.0 * 24.0 * 3_600_000.0;

/// Splits `1.5MB` into the number and the unit.
fn number_and_unit(text: &str) -> Result<(f64, &str), &'static str> {
    if text.starts_with('-') {
        return Err("it is negative");
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let num: f64 = num
        .replace('_', "")
        .parse()
        .map_err(|_| "it does not start with a number")?;
    Ok((num, unit.trim()))
}

/// Parses `512`, `4KB`, `4 KiB`, `1.5MB`, `2TB`, `256Mi` into bytes (at most 1 PB).
pub fn parse_bytes(text: &str) -> Result<u64, &'static str> {
    let (num, unit) = number_and_unit(text)?;
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "ti" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err("its unit is not one of B, KB, MB, GB, TB, KiB, MiB, GiB, TiB"),
    };
    let v = num * mult;
    if !v.is_finite() || v > MAX_BYTES {
        return Err("it is larger than 1 PB");
    }
    Ok(v.round() as u64)
}

/// Parses `250ms`, `1.5s`, `2m`, `1h`, `30us`, or a plain number of seconds into
/// milliseconds (at most 7 days).
pub fn parse_duration_ms(text: &str) -> Result<f64, &'static str> {
    let (num, unit) = number_and_unit(text)?;
    let mult = match unit {
        "" | "s" => 1000.0,
        "ms" => 1.0,
        "us" | "µs" => 0.001,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return Err("its unit is not one of us, ms, s, m, h"),
    };
    let v = num * mult;
    if !v.is_finite() || v > MAX_DURATION_MS {
        return Err("it is longer than 7 days");
    }
    Ok(v)
}

/// Reads the keys of one mapping, remembering which were used, to report the others.
#[derive(Debug)]
pub struct Fields<'a> {
    node: &'a Yaml,
    entries: &'a [(Yaml, Yaml)],
    used: Vec<bool>,
    what: &'a str,
}

impl<'a> Fields<'a> {
    /// Starts reading `node`, which must be a mapping; `what` names it in messages.
    pub fn new(node: &'a Yaml, what: &'a str) -> Result<Self, WdlError> {
        let entries = node.map(what)?;
        Ok(Fields {
            node,
            entries,
            used: vec![false; entries.len()],
            what,
        })
    }

    /// The position of the mapping.
    pub fn pos(&self) -> Pos {
        self.node.pos
    }

    /// True if the key is present.
    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| key_text(k) == Some(key))
    }

    /// The value of `key`, if present (null counts as absent).
    pub fn get(&mut self, key: &str) -> Option<&'a Yaml> {
        let i = self.entries.iter().position(|(k, _)| key_text(k) == Some(key))?;
        self.used[i] = true;
        let v = &self.entries[i].1;
        (!v.is_null()).then_some(v)
    }

    /// The value of `key`, which must be present.
    pub fn req(&mut self, key: &str, expected: &str) -> Result<&'a Yaml, WdlError> {
        match self.get(key) {
            Some(v) => Ok(v),
            None => Err(WdlError::new(
                ErrorKind::MissingKey,
                self.node.pos,
                format!("{} has no `{key}`", self.what),
            )
            .expected(format!("`{key}:` with {expected}"))),
        }
    }

    /// Fails on the first key that was not read, suggesting the closest known key.
    pub fn finish(self, known: &[&str]) -> Result<(), WdlError> {
        for (i, (k, _)) in self.entries.iter().enumerate() {
            if self.used[i] {
                continue;
            }
            let name = key_text(k).unwrap_or("?");
            let mut err = WdlError::new(
                ErrorKind::UnknownKey,
                k.pos,
                format!("unknown key `{name}` in {}", self.what),
            )
            .expected(format!("one of: {}", list_names(known.iter().copied(), 30)));
            if let Some(s) = did_you_mean(name, known.iter().copied()) {
                err = err.hint(format!("did you mean `{s}`?"));
            }
            return Err(err);
        }
        Ok(())
    }
}

/// The text of a scalar key.
pub fn key_text(k: &Yaml) -> Option<&str> {
    match &k.value {
        Value::Scalar { text, .. } => Some(text),
        _ => None,
    }
}

fn pos_of(span: &Span) -> Pos {
    Pos::new(span.start.line() as u32, span.start.col() as u32 + 1)
}

/// Parses one YAML document into a positioned tree.
pub fn parse(text: &str) -> Result<Yaml, WdlError> {
    let mut builder = Builder {
        anchors: HashMap::new(),
        stack: Vec::new(),
        root: None,
        values: 0,
        copied: 0,
    };
    let mut docs = 0;
    for ev in Parser::new_from_str(text) {
        let (event, span) = ev.map_err(|e| {
            let pos = Pos::new(e.marker().line() as u32, e.marker().col() as u32 + 1);
            if e.info().contains("unknown anchor") {
                return WdlError::new(
                    ErrorKind::Yaml,
                    pos,
                    "this alias (`*name`) refers to an anchor that is not defined before it",
                )
                .hint("define the anchor (`&name`) on a value above this line, or remove the `*`");
            }
            if e.info().contains("valid YAML whitespace") || e.info().contains("tab") {
                return WdlError::new(ErrorKind::Yaml, pos, format!("this is not readable YAML: {}", e.info()))
                    .hint("YAML wants spaces here: replace tabs with spaces (indentation, and after `:` and `-`)");
            }
            if e.info().contains("recursion limit") {
                return WdlError::new(
                    ErrorKind::Yaml,
                    pos,
                    format!("the YAML is nested more than {MAX_DEPTH} levels deep"),
                );
            }
            WdlError::new(ErrorKind::Yaml, pos, format!("this is not readable YAML: {}", e.info()))
                .hint("check the indentation and the `:` and `-` around this place")
        })?;
        let pos = pos_of(&span);
        match event {
            Event::DocumentStart(_) => {
                docs += 1;
                if docs > 1 {
                    return Err(
                        WdlError::new(ErrorKind::Yaml, pos, "the file holds more than one YAML document")
                            .hint("keep one workflow per file (remove the second `---`)"),
                    );
                }
            }
            Event::Scalar(v, style, anchor, _) => {
                let value = if style == ScalarStyle::Plain && matches!(v.as_ref(), "" | "~" | "null" | "Null" | "NULL")
                {
                    Value::Null
                } else {
                    Value::Scalar {
                        text: v.into_owned(),
                        quoted: style != ScalarStyle::Plain,
                    }
                };
                builder.push(Yaml { pos, value }, anchor)?;
            }
            Event::SequenceStart(anchor, _) => builder.open(pos, Value::Seq(Vec::new()), anchor)?,
            Event::MappingStart(anchor, _) => builder.open(pos, Value::Map(Vec::new()), anchor)?,
            Event::SequenceEnd | Event::MappingEnd => builder.close()?,
            Event::Alias(id) => {
                let node = builder.anchors.get(&id).cloned().ok_or_else(|| {
                    WdlError::new(
                        ErrorKind::Yaml,
                        pos,
                        "this alias names an anchor that is not defined before it",
                    )
                })?;
                let n = count_nodes(&node);
                builder.copied += n;
                if builder.copied > MAX_ALIAS_VALUES {
                    return Err(WdlError::new(
                        ErrorKind::Yaml,
                        pos,
                        format!(
                            "the YAML's aliases copy more than {} values, the limit of values copied through \
                             aliases",
                            fmt_thousands(MAX_ALIAS_VALUES)
                        ),
                    )
                    .hint("each `*alias` copies all of its anchor's values: repeat less through aliases"));
                }
                // The copy's root is counted when it is pushed.
                builder.values += n - 1;
                builder.push(Yaml { pos, value: node.value }, 0)?;
            }
            _ => {}
        }
    }
    Ok(builder.root.unwrap_or(Yaml {
        pos: Pos::new(1, 1),
        value: Value::Null,
    }))
}

fn count_nodes(y: &Yaml) -> usize {
    1 + match &y.value {
        Value::Seq(s) => s.iter().map(count_nodes).sum(),
        Value::Map(m) => m.iter().map(|(k, v)| count_nodes(k) + count_nodes(v)).sum(),
        _ => 0,
    }
}

struct Frame {
    node: Yaml,
    anchor: usize,
    /// For mappings: a key waiting for its value.
    key: Option<Yaml>,
    /// For mappings: the line of each key seen so far (looked up, never iterated).
    seen: HashMap<String, u32>,
}

struct Builder {
    /// Anchored nodes by anchor id (looked up, never iterated).
    anchors: HashMap<usize, Yaml>,
    stack: Vec<Frame>,
    root: Option<Yaml>,
    /// Values in the tree so far, written or copied.
    values: usize,
    /// Values copied through aliases so far.
    copied: usize,
}

impl Builder {
    fn open(&mut self, pos: Pos, value: Value, anchor: usize) -> Result<(), WdlError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(WdlError::new(
                ErrorKind::Yaml,
                pos,
                format!("the YAML is nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        self.stack.push(Frame {
            node: Yaml { pos, value },
            anchor,
            key: None,
            seen: HashMap::new(),
        });
        Ok(())
    }

    fn close(&mut self) -> Result<(), WdlError> {
        let frame = self.stack.pop().expect("the parser balances starts and ends");
        self.push(frame.node, frame.anchor)
    }

    fn push(&mut self, node: Yaml, anchor: usize) -> Result<(), WdlError> {
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(WdlError::new(
                ErrorKind::Yaml,
                node.pos,
                format!(
                    "the YAML holds more than {} values, the limit of values in a workflow file",
                    fmt_thousands(MAX_VALUES)
                ),
            )
            .hint("split the workflow, or write it with fewer keys (defaults need not be written)"));
        }
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let Some(top) = self.stack.last_mut() else {
            self.root = Some(node);
            return Ok(());
        };
        match &mut top.node.value {
            Value::Seq(items) => items.push(node),
            Value::Map(entries) => match top.key.take() {
                None => top.key = Some(node),
                Some(key) => {
                    if let Some(k) = key_text(&key) {
                        if let Some(first) = top.seen.get(k) {
                            return Err(WdlError::new(
                                ErrorKind::Yaml,
                                key.pos,
                                format!("the key `{k}` appears twice in one mapping"),
                            )
                            .hint(format!(
                                "it was first written at line {first}; remove or rename one of them"
                            )));
                        }
                        top.seen.insert(k.to_owned(), key.pos.line);
                    }
                    entries.push((key, node));
                }
            },
            _ => unreachable!("only collections are pushed on the stack"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let y = parse("a:\n  b: [1, 2]\n").unwrap();
        let m = y.map("").unwrap();
        assert_eq!(m[0].0.pos, Pos::new(1, 1));
        let inner = m[0].1.map("").unwrap();
        assert_eq!(inner[0].0.pos, Pos::new(2, 3));
        assert_eq!(inner[0].1.seq("").unwrap()[1].pos, Pos::new(2, 10));
    }

    #[test]
    fn aliases_copy_anchored_nodes() {
        let y = parse("x: &a {k: 1}\ny: *a\n").unwrap();
        let m = y.map("").unwrap();
        assert_eq!(m[0].1.value, m[1].1.value);
    }

    #[test]
    fn duplicate_keys_and_bad_syntax_are_errors() {
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!((e.kind, e.pos), (ErrorKind::Yaml, Pos::new(2, 1)));
        let e = parse("a: [1, 2\n").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Yaml);
        let e = parse("a: *nope\n").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Yaml);
    }

    #[test]
    fn units() {
        assert_eq!(parse_bytes("737KB"), Ok(737_000));
        assert_eq!(parse_bytes("256Mi"), Ok(256 << 20));
        assert_eq!(parse_bytes("1.5 MB"), Ok(1_500_000));
        assert_eq!(parse_bytes("2TB"), Ok(2_000_000_000_000));
        assert!(parse_bytes("12 parsecs").unwrap_err().contains("unit"));
        assert!(parse_bytes("-1").unwrap_err().contains("negative"));
        assert!(parse_bytes("2000TB").unwrap_err().contains("1 PB"));
        assert_eq!(parse_duration_ms("1.5s"), Ok(1500.0));
        assert_eq!(parse_duration_ms("250ms"), Ok(250.0));
        assert_eq!(parse_duration_ms("3"), Ok(3000.0));
        assert!(parse_duration_ms("fast").is_err());
        assert!(parse_duration_ms("8000h").unwrap_err().contains("7 days"));
    }

    #[test]
    fn null_and_quoted() {
        let y = parse("a:\nb: '~'\n").unwrap();
        let m = y.map("").unwrap();
        assert!(m[0].1.is_null());
        assert!(!m[1].1.is_null());
    }
}
