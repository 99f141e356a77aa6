//! WDL files from a small grammar, driven by [`arbitrary::Unstructured`].
//!
//! The text is always well-formed YAML with the keys of the language (`name`, `inputs`,
//! `functions`, `steps`, `output`, `contention`; `task`, `sequence`, `parallel`, `switch`,
//! `foreach`), and names, references and conditions drawn from small pools, so that most
//! inputs reach the compiler's name resolution, cycle and scope checks and, when they
//! compile, the partitioner. A few values of every pool are wrong on purpose (reserved or
//! CEL-unsafe names, dangling references, bad sizes, broken conditions).

use std::fmt::Write as _;

use arbitrary::{Arbitrary as _, Result, Unstructured};

/// Task and function names; the last ones are wrong as step names (`input` and `each` are
/// reserved, `get-flag` is not a CEL identifier) and are picked rarely.
const TASKS: &[&str] = &["a", "b", "c", "d", "split", "merge", "count", "a_1"];
const BAD_TASKS: &[&str] = &["get-flag", "input", "each", "a.b", ""];
/// Names of switches and foreach steps.
const BLOCKS: &[&str] = &["loop", "pages", "check", "inner", "a"];
/// Output names.
const OUTPUTS: &[&str] = &["x", "y", "out", "chunks", "flag"];
/// Workflow input names.
const INPUTS: &[&str] = &["x", "y", "texts", "image"];
/// Input names of tasks.
const BINDINGS: &[&str] = &["x", "y", "text", "file", "item"];
const KINDS: &[&str] = &["bytes", "json", "list", "list", "json"];
const BAD_KINDS: &[&str] = &["text", "", "[list]"];
const SIZES: &[&str] = &[
    "0", "1", "512", "64KB", "1.5MB", "29.6MB", "2GB", "256MiB", "64Ki", "1000TB",
];
const BAD_SIZES: &[&str] = &[
    "9PB",
    "18446744073709551615",
    "18446744073709551616",
    "1e30",
    "-1",
    "lots",
    "1.5",
];
const DURATIONS: &[&str] = &["1ms", "250ms", "1.5s", "2m", "17ms", "3"];
const BAD_DURATIONS: &[&str] = &["0", "1e9", "-1s", "soon", "1e400ms"];
const MEMORIES: &[&str] = &["64MiB", "256MiB", "1GiB", "128MiB", "4TiB"];
const BAD_MEMORIES: &[&str] = &["0", "128", "-1MiB", "1MiB"];
const SCALES: &[&str] = &["1", "1", "2", "3", "8", "64", "65", "10000"];
const BAD_SCALES: &[&str] = &["0", "10001", "4294967295", "4294967296", "1.5"];
const ISOLATIONS: &[&str] = &["thread", "process", "container"];
const CPUS: &[&str] = &["0.5", "1", "2", "64", "0.001"];
const BAD_CPUS: &[&str] = &["0", "-1", "1e300"];

/// Builds one workflow file from `u`. Never fails for lack of data: an exhausted
/// `Unstructured` gives the smallest choices.
pub fn workflow(u: &mut Unstructured<'_>) -> Result<String> {
    let mut g = Gen {
        out: String::new(),
        budget: 32,
        functions: Vec::new(),
        tasks: Vec::new(),
        names: Vec::new(),
        inputs: Vec::new(),
        loops: Vec::new(),
    };
    g.top(u)?;
    Ok(g.out)
}

type Outputs = Vec<(&'static str, &'static str)>;

/// Names for tasks that call a function of another name (`function:`).
const EXTRA_TASKS: &[&str] = &[
    "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9", "t10", "t11", "t12", "t13", "t14", "t15", "t16", "t17",
    "t18", "t19", "t20", "t21", "t22", "t23", "t24", "t25", "t26", "t27", "t28", "t29", "t30", "t31", "t32", "t33",
    "t34", "t35", "t36", "t37", "t38", "t39", "t40",
];

#[derive(Debug)]
struct Gen {
    out: String,
    /// Steps still allowed (keeps files, and nesting, small).
    budget: u32,
    /// Declared functions and their outputs (name, type).
    functions: Vec<(&'static str, Outputs)>,
    /// Tasks written so far, with the outputs of their function.
    tasks: Vec<(&'static str, Outputs)>,
    /// Every step name used so far (tasks, switches, foreach steps).
    names: Vec<&'static str>,
    /// Declared workflow inputs (none: the workflow does not declare them).
    inputs: Vec<&'static str>,
    /// Names of the enclosing foreach steps (`each` when unnamed).
    loops: Vec<&'static str>,
}

fn pick(u: &mut Unstructured<'_>, pool: &[&'static str]) -> Result<&'static str> {
    Ok(*u.choose(pool)?)
}

/// Mostly a value of `good`, now and then (1 in 256) one of `bad`.
fn value(u: &mut Unstructured<'_>, good: &[&'static str], bad: &[&'static str]) -> Result<&'static str> {
    if rarely(u)? { pick(u, bad) } else { pick(u, good) }
}

/// Up to `n` different names of `pool` (a key repeated in one mapping is an error of the
/// YAML layer, which would hide everything behind it).
fn distinct(u: &mut Unstructured<'_>, pool: &[&'static str], n: u8) -> Result<Vec<&'static str>> {
    let mut left = pool.to_vec();
    let mut out = Vec::new();
    for _ in 0..n {
        if left.is_empty() {
            break;
        }
        let i = u.choose_index(left.len())?;
        out.push(left.swap_remove(i));
    }
    Ok(out)
}

/// True with probability 1 in 256 (false once the data runs out).
fn rarely(u: &mut Unstructured<'_>) -> Result<bool> {
    Ok(!u.is_empty() && u8::arbitrary(u)? == 0)
}

/// True with probability about `n` in 8 (false once the data runs out).
fn chance(u: &mut Unstructured<'_>, n: u8) -> Result<bool> {
    Ok(!u.is_empty() && u.int_in_range(0..=7u8)? < n)
}

impl Gen {
    fn line(&mut self, indent: usize, text: &str) {
        let _ = writeln!(self.out, "{:indent$}{text}", "");
    }

    fn top(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        let name = pick(u, &["wf", "wordcount", "a b", "\"quoted\"", "x"])?;
        self.line(0, &format!("name: {name}"));
        if chance(u, 3)? {
            self.line(0, "inputs:");
            let n = u.int_in_range(0..=3u8)?;
            for input in distinct(u, INPUTS, n)? {
                self.inputs.push(input);
                let kind = value(u, KINDS, BAD_KINDS)?;
                if chance(u, 4)? {
                    let size = value(u, SIZES, BAD_SIZES)?;
                    self.line(2, &format!("{input}: {{type: {kind}, size: {size}}}"));
                } else {
                    self.line(2, &format!("{input}: {kind}"));
                }
            }
        }
        self.line(0, "functions:");
        for _ in 0..u.int_in_range(1..=6u8)? {
            self.function(u)?;
        }
        // Mostly a list of steps; sometimes a single step without the list.
        if chance(u, 1)? {
            self.line(0, "steps:");
            self.step(u, 2, 0)?;
        } else {
            self.line(0, "steps:");
            self.steps(u, 2, 0)?;
        }
        if chance(u, 3)? {
            self.line(0, "output:");
            let n = u.int_in_range(1..=2u8)?;
            for name in distinct(u, &["result", "out", "x"], n)? {
                let refs = self.refs(u)?;
                self.line(2, &format!("{name}: {refs}"));
            }
        }
        if chance(u, 1)? {
            self.line(0, "contention:");
            for _ in 0..u.int_in_range(1..=2u8)? {
                let a = value(u, TASKS, BAD_TASKS)?;
                let b = value(u, TASKS, BAD_TASKS)?;
                self.line(2, &format!("- [{a}, {b}]"));
            }
        }
        Ok(())
    }

    fn function(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        // A name not declared yet (a repeated key is an error of the YAML layer).
        let free: Vec<&'static str> = TASKS
            .iter()
            .copied()
            .filter(|t| !self.functions.iter().any(|(f, _)| f == t))
            .collect();
        let name = if free.is_empty() {
            return Ok(());
        } else {
            pick(u, &free)?
        };
        let mut fields = Vec::new();
        if chance(u, 1)? {
            fields.push(format!("pack: {}", pick(u, &["wordcount", "images", "p"])?));
        }
        if chance(u, 2)? {
            fields.push(format!("memory: {}", value(u, MEMORIES, BAD_MEMORIES)?));
        }
        if chance(u, 1)? {
            fields.push(format!(
                "memory_use: {}",
                value(u, &["16MiB", "32MiB", "64MiB"], MEMORIES)?
            ));
        }
        if chance(u, 1)? {
            fields.push(format!("cpu: {}", value(u, CPUS, BAD_CPUS)?));
        }
        if chance(u, 1)? {
            fields.push(format!("timeout: {}", value(u, DURATIONS, BAD_DURATIONS)?));
        }
        if chance(u, 1)? {
            let retry = value(
                u,
                &[
                    "3",
                    "1",
                    "{attempts: 3, backoff: 100ms, jitter: 0.2}",
                    "{attempts: 100, jitter: 1}",
                ],
                &["0", "101", "{attempts: 2, jitter: 1.5}"],
            )?;
            fields.push(format!("retry: {retry}"));
        }
        if chance(u, 2)? {
            fields.push(format!("isolation: {}", value(u, ISOLATIONS, &["vm"])?));
        }
        if chance(u, 3)? {
            fields.push(format!("scale: {}", value(u, SCALES, BAD_SCALES)?));
        }
        if chance(u, 3)? {
            fields.push(format!("runtime: {}", value(u, DURATIONS, BAD_DURATIONS)?));
        }
        let mut declared = Vec::new();
        if chance(u, 6)? {
            let mut outs = Vec::new();
            let n = u.int_in_range(1..=3u8)?;
            let short = chance(u, 1)?;
            for o in distinct(u, OUTPUTS, n)? {
                let kind = if short { "bytes" } else { value(u, KINDS, BAD_KINDS)? };
                declared.push((o, kind));
                outs.push(match u.int_in_range(0..=3u8)? {
                    0 => format!("{o}: {kind}"),
                    1 => format!("{o}: {{type: {kind}}}"),
                    _ => format!("{o}: {{type: {kind}, size: {}}}", value(u, SIZES, BAD_SIZES)?),
                });
            }
            if short {
                let names: Vec<&str> = declared.iter().map(|(o, _)| *o).collect();
                fields.push(format!("outputs: [{}]", names.join(", ")));
            } else {
                fields.push(format!("outputs: {{{}}}", outs.join(", ")));
            }
        }
        self.line(2, &format!("{name}: {{{}}}", fields.join(", ")));
        self.functions.push((name, declared));
        Ok(())
    }

    /// A block list of steps at `indent`.
    fn steps(&mut self, u: &mut Unstructured<'_>, indent: usize, depth: u32) -> Result<()> {
        let n = if self.budget == 0 { 1 } else { u.int_in_range(1..=4u8)? };
        for _ in 0..n {
            self.step(u, indent, depth)?;
        }
        Ok(())
    }

    /// One step as a list item (`- task: …`) at `indent`; its other keys at `indent + 2`.
    fn step(&mut self, u: &mut Unstructured<'_>, indent: usize, depth: u32) -> Result<()> {
        let inner = indent + 2;
        let kind = if self.budget == 0 || depth >= 4 {
            0
        } else {
            u.int_in_range(0..=7u8)?
        };
        self.budget = self.budget.saturating_sub(1);
        match kind {
            // task (the most common step)
            0..=3 => {
                // Mostly a declared function not used by a task yet; else any name, with
                // `function:` naming a declared function now and then.
                let unused: Vec<usize> = (0..self.functions.len())
                    .filter(|&i| !self.names.contains(&self.functions[i].0))
                    .collect();
                let (name, function) = if !unused.is_empty() && (u.is_empty() || !chance(u, 1)?) {
                    let i = *u.choose(&unused)?;
                    (self.functions[i].0, None)
                } else if !self.functions.is_empty() && !rarely(u)? {
                    let i = u.choose_index(self.functions.len())?;
                    (self.fresh(u, EXTRA_TASKS)?, Some(i))
                } else {
                    (value(u, TASKS, BAD_TASKS)?, None)
                };
                if function.is_none() {
                    self.names.push(name);
                }
                self.line(indent, &format!("- task: {name}"));
                if let Some(i) = function {
                    self.line(inner, &format!("function: {}", self.functions[i].0));
                }
                let outputs = function
                    .or_else(|| self.functions.iter().position(|(f, _)| *f == name))
                    .map(|i| self.functions[i].1.clone())
                    .unwrap_or_default();
                if chance(u, 5)? {
                    let mut bindings = Vec::new();
                    let n = u.int_in_range(1..=3u8)?;
                    for input in distinct(u, BINDINGS, n)? {
                        bindings.push(format!("{input}: {}", self.refs(u)?));
                    }
                    self.line(inner, &format!("inputs: {{{}}}", bindings.join(", ")));
                }
                self.tasks.push((name, outputs));
            }
            4 => {
                self.line(indent, "- sequence:");
                self.steps(u, inner + 2, depth + 1)?;
            }
            5 => {
                self.line(indent, "- parallel:");
                for _ in 0..u.int_in_range(1..=3u8)? {
                    if chance(u, 2)? {
                        // A branch that is a list of steps.
                        self.line(inner + 2, "-");
                        self.steps(u, inner + 4, depth + 1)?;
                    } else {
                        self.step(u, inner + 2, depth + 1)?;
                    }
                }
            }
            6 => {
                self.line(indent, "- switch:");
                if chance(u, 3)? {
                    let name = self.fresh(u, BLOCKS)?;
                    self.line(inner + 2, &format!("name: {name}"));
                }
                self.line(inner + 2, "cases:");
                for _ in 0..u.int_in_range(1..=3u8)? {
                    let cond = self.condition(u)?;
                    self.line(inner + 4, &format!("- if: {cond}"));
                    self.line(inner + 6, "then:");
                    self.steps(u, inner + 8, depth + 1)?;
                }
                match u.int_in_range(0..=63u8)? {
                    0..=15 => self.line(inner + 2, "default: []"),
                    63 => {} // no default: an error
                    _ => {
                        self.line(inner + 2, "default:");
                        self.steps(u, inner + 4, depth + 1)?;
                    }
                }
            }
            _ => {
                self.line(indent, "- foreach:");
                let mut name = "each";
                if chance(u, 3)? {
                    name = self.fresh(u, BLOCKS)?;
                    self.line(inner + 2, &format!("name: {name}"));
                }
                let over = self.reference_of(u, "list")?;
                self.line(inner + 2, &format!("over: {over}"));
                if chance(u, 3)? {
                    self.line(
                        inner + 2,
                        &format!("max_concurrency: {}", value(u, &["0", "1", "4"], &["-1", "1.5"])?),
                    );
                }
                if chance(u, 3)? {
                    self.line(
                        inner + 2,
                        &format!("width: {}", value(u, &["1", "4", "8", "1000"], &["0", "-1"])?),
                    );
                }
                self.line(inner + 2, "do:");
                self.loops.push(name);
                self.steps(u, inner + 4, depth + 1)?;
                self.loops.pop();
            }
        }
        Ok(())
    }

    /// One reference or a flow list of them.
    fn refs(&self, u: &mut Unstructured<'_>) -> Result<String> {
        if chance(u, 1)? {
            let a = self.reference(u)?;
            let b = self.reference(u)?;
            Ok(format!("[{a}, {b}]"))
        } else {
            self.reference(u)
        }
    }

    /// A step name not used yet, mostly from `pool`.
    fn fresh(&mut self, u: &mut Unstructured<'_>, pool: &[&'static str]) -> Result<&'static str> {
        let free: Vec<&'static str> = pool.iter().copied().filter(|n| !self.names.contains(n)).collect();
        let name = if free.is_empty() {
            value(u, pool, BAD_TASKS)?
        } else {
            pick(u, &free)?
        };
        self.names.push(name);
        Ok(name)
    }

    fn reference(&self, u: &mut Unstructured<'_>) -> Result<String> {
        self.reference_of(u, "")
    }

    /// Mostly an output of a task written before (of type `kind` if there is one), an input,
    /// or the element of an enclosing foreach; sometimes anything.
    fn reference_of(&self, u: &mut Unstructured<'_>, kind: &str) -> Result<String> {
        let made: Vec<(&str, &str)> = self
            .tasks
            .iter()
            .flat_map(|(t, outs)| outs.iter().map(move |(o, _)| (*t, *o)))
            .collect();
        let typed: Vec<(&str, &str)> = self
            .tasks
            .iter()
            .flat_map(|(t, outs)| outs.iter().filter(|(_, k)| *k == kind).map(move |(o, _)| (*t, *o)))
            .collect();
        if !typed.is_empty() && chance(u, 6)? {
            let (t, o) = *u.choose(&typed)?;
            return Ok(format!("{t}.{o}"));
        }
        if !made.is_empty() && chance(u, 5)? {
            let (t, o) = *u.choose(&made)?;
            return Ok(format!("{t}.{o}"));
        }
        if chance(u, 3)? {
            return Ok(format!("input.{}", self.input(u)?));
        }
        if !self.loops.is_empty() && chance(u, 4)? {
            let l = *u.choose(&self.loops)?;
            let what = if chance(u, 5)? { "item" } else { "index" };
            return Ok(format!("{l}.{what}"));
        }
        // Rarely (1 in 8 of what is left) a reference that may dangle or is not one.
        Ok(match u.int_in_range(0..=63u8)? {
            0 => format!("{}.{}", pick(u, TASKS)?, pick(u, OUTPUTS)?),
            1 => format!("{}.item", pick(u, &["each", "loop", "pages", "inner"])?),
            2 => format!("{}.index", pick(u, &["each", "loop", "pages"])?),
            3 => format!("{}.{}", pick(u, BLOCKS)?, pick(u, OUTPUTS)?),
            4 => format!("input.{}", pick(u, INPUTS)?),
            5 => format!("[input.{}]", self.input(u)?),
            6 => pick(
                u,
                &["a", "a.x.y", "\"\"", ".x", "input.", "each", "input.x.y", "each.item.x"],
            )?
            .to_owned(),
            _ => format!("input.{}", self.input(u)?),
        })
    }

    /// The name of a workflow input: a declared one when the workflow declares its inputs.
    fn input(&self, u: &mut Unstructured<'_>) -> Result<&'static str> {
        if self.inputs.is_empty() {
            pick(u, INPUTS)
        } else {
            value(u, &self.inputs, INPUTS)
        }
    }

    /// A CEL condition, quoted for YAML.
    fn condition(&self, u: &mut Unstructured<'_>) -> Result<String> {
        let atom = |u: &mut Unstructured<'_>| -> Result<String> {
            Ok(match u.int_in_range(0..=15u8)? {
                0..=3 => self.reference_of(u, "json")?,
                4 | 5 => format!("{} < {}", self.reference_of(u, "json")?, self.reference_of(u, "json")?),
                6 | 7 => format!(
                    "size({}) > {}",
                    self.reference_of(u, "list")?,
                    pick(u, &["0", "2", "-1"])?
                ),
                8 | 9 => format!("{} == 'x'", self.reference_of(u, "json")?),
                10 => format!("!{}", self.reference_of(u, "json")?),
                11 | 12 => pick(u, &["true", "false", "1", "null"])?.to_owned(),
                13 | 14 => format!("{} in [1, 2]", self.reference_of(u, "json")?),
                15 if chance(u, 2)? => self.reference_of(u, "bytes")?,
                _ => pick(u, &["a and b", "((", "[1, 2][5]", "1 / 0", "{'k': 1}.k", "x.y.z()", ""])?.to_owned(),
            })
        };
        let mut cond = atom(u)?;
        for _ in 0..u.int_in_range(0..=2u8)? {
            let op = pick(u, &[" && ", " || "])?;
            cond = format!("{cond}{op}{}", atom(u)?);
        }
        Ok(format!("\"{}\"", cond.replace('\\', "\\\\").replace('"', "\\\"")))
    }
}
