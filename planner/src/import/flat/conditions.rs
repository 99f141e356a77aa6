//! Switch conditions: FaaSFlow's Python-like conditions translated into CEL, each `INPUT.x`
//! resolved to the output of its nearest producer (or a workflow input), and the outputs they
//! read made json.

use super::Importer;
use crate::compile::{add_data, check_cel_syntax, is_identifier};
use crate::error::{ErrorKind, WdlError};
use crate::import::cond::{self, Token};
use crate::wdl::Condition;
use faasflow_core::dag::{Case, DataSource, NodeId, NodeKind, ValueKind};

impl Importer {
    pub(super) fn conditions(&mut self) -> Result<(), WdlError> {
        let switches: Vec<NodeId> = self
            .wf
            .graph
            .node_indices()
            .filter(|&n| matches!(self.wf.graph[n].kind, NodeKind::Switch(_)))
            .collect();
        for sw in switches {
            let NodeKind::Switch(s) = &self.wf.graph[sw].kind else {
                continue;
            };
            let cases = s.cases.clone();
            let mut translated = Vec::new();
            for c in &cases {
                translated.push(self.translate(sw, c)?);
            }
            if let NodeKind::Switch(s) = &mut self.wf.graph[sw].kind {
                s.cases = translated;
            }
        }
        Ok(())
    }

    /// Translates one Python-like condition, resolving `INPUT.x` to its producer.
    fn translate(&mut self, sw: NodeId, c: &Case) -> Result<Case, WdlError> {
        let tokens = cond::tokenize(&c.condition, c.pos)?;
        let mut read: Vec<(NodeId, String)> = Vec::new();
        let alone = tokens.len() == 1;
        let mut out = Vec::new();
        for t in tokens {
            match t {
                Token::Verbatim(v) => out.push(v),
                Token::Name(n) => {
                    let Some(field) = n.strip_prefix("INPUT.").or_else(|| n.strip_prefix("LOCAL.")) else {
                        return Err(WdlError::new(
                            ErrorKind::Unsupported,
                            c.pos,
                            format!("cannot translate `{n}` in the condition `{}`", c.condition),
                        )
                        .expected("INPUT.<name>: an output of a preceding function or a workflow input"));
                    };
                    let producers = self.nearest_producers(sw, field);
                    let refs: Vec<String> = if producers.is_empty() {
                        self.input_named(field);
                        vec![format!("input.{field}")]
                    } else {
                        producers
                            .iter()
                            .map(|&p| format!("{}.{field}", self.wf.graph[p].name))
                            .collect()
                    };
                    if refs.len() > 1 && !alone {
                        return Err(WdlError::new(ErrorKind::Unsupported, c.pos, format!("`{n}` in `{}` could come from {}", c.condition, refs.join(" or ")))
                            .hint("FaaSFlow took whichever finished last; write the condition in faasflow's WDL and name the producer"));
                    }
                    for &p in &producers {
                        let pname = &self.wf.graph[p].name;
                        if !is_identifier(pname) || !is_identifier(field) {
                            return Err(WdlError::new(
                                ErrorKind::Unsupported,
                                c.pos,
                                format!(
                                    "the condition `{}` reads `{pname}.{field}`, which CEL cannot name",
                                    c.condition
                                ),
                            )
                            .expected("function and output names of letters, digits and `_`")
                            .hint(format!(
                                "rename `{pname}` (or its output `{field}`) in the workflow file"
                            )));
                        }
                        self.json_outputs.insert((p, field.to_owned()));
                        read.push((p, field.to_owned()));
                    }
                    out.push(if refs.len() > 1 {
                        format!("({})", refs.join(" || "))
                    } else {
                        refs[0].clone()
                    });
                }
            }
        }
        let text = cond::join(&out);
        let cel_cond = Condition {
            text: text.clone(),
            pos: c.pos,
        };
        check_cel_syntax(&cel_cond).map_err(|mut e| {
            e.message = format!("{} (translated from FaaSFlow's `{}`)", e.message, c.condition);
            e
        })?;
        for (p, field) in read {
            let size = self.output_size(&DataSource::Output {
                node: p,
                output: field.clone(),
            });
            let key = format!("{}.{field}", self.wf.graph[p].name);
            add_data(&mut self.wf, p, sw, &field, &key, size);
        }
        Ok(Case {
            condition: text,
            pos: c.pos,
        })
    }

    pub(super) fn mark_json_outputs(&mut self) {
        for (n, o) in std::mem::take(&mut self.json_outputs) {
            if let NodeKind::Task(t) = &mut self.wf.graph[n].kind {
                for d in t.spec.outputs.iter_mut().filter(|d| d.name == o) {
                    d.kind = ValueKind::Json;
                }
            }
        }
    }
}
