//! Switch conditions: checked as CEL (syntax, a constant, functions CEL does not have) and read
//! for the references they make.

use crate::error::{ErrorKind, Pos, WdlError};
use crate::wdl::{Condition, Ref};

/// Checks that a condition is valid CEL.
pub(crate) fn check_cel_syntax(cond: &Condition) -> Result<cel::Program, WdlError> {
    let program = cel::Program::compile(&cond.text).map_err(|e| {
        let detail = e.errors.first().map_or_else(|| e.to_string(), |x| x.msg.clone());
        // The parser lists every token it would have accepted; the first words say enough.
        let detail = detail.split(" expecting").next().unwrap_or(&detail).to_owned();
        WdlError::new(
            ErrorKind::Condition,
            cond.pos,
            format!("`{}` is not a valid CEL condition: {detail}", cond.text),
        )
        .expected("a CEL expression such as `upload.flag == true && input.size > 10`")
        .hint("CEL uses && || ! (not and/or/not), == for equality, and double or single quotes for strings")
    })?;
    use cel::common::ast::{Expr, LiteralValue};
    if let Expr::Literal(lit) = &program.expression().expr
        && !matches!(lit, LiteralValue::Boolean(_))
    {
        return Err(WdlError::new(
            ErrorKind::Condition,
            cond.pos,
            format!("the condition `{}` is a constant, not true or false", cond.text),
        )
        .expected("a comparison or a test that is true or false, like `step.count > 3`"));
    }
    let mut unknown = None;
    find_unknown_function(program.expression(), &mut unknown);
    if let Some(f) = unknown {
        return Err(WdlError::new(
            ErrorKind::Condition,
            cond.pos,
            format!("the condition `{}` calls `{f}`, which CEL does not have", cond.text),
        )
        .expected(format!("CEL's functions: {}", CEL_FUNCTIONS.join(", "))));
    }
    Ok(program)
}

/// The functions a condition may call (CEL's standard functions that the evaluator has).
const CEL_FUNCTIONS: &[&str] = &[
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "int",
    "uint",
    "double",
    "string",
    "bool",
    "bytes",
    "type",
    "dyn",
    "duration",
    "timestamp",
    "max",
    "min",
];

fn find_unknown_function(e: &cel::common::ast::IdedExpr, out: &mut Option<String>) {
    use cel::common::ast::Expr;
    if out.is_some() {
        return;
    }
    match &e.expr {
        Expr::Call(c) => {
            let operator = c.func_name.starts_with(['_', '@', '!', '-']);
            if !operator && !CEL_FUNCTIONS.contains(&c.func_name.as_str()) {
                *out = Some(c.func_name.clone());
                return;
            }
            if let Some(t) = &c.target {
                find_unknown_function(t, out);
            }
            c.args.iter().for_each(|a| find_unknown_function(a, out));
        }
        Expr::Select(s) => find_unknown_function(&s.operand, out),
        Expr::List(l) => l.elements.iter().for_each(|x| find_unknown_function(x, out)),
        Expr::Map(m) => {
            for entry in &m.entries {
                if let cel::common::ast::EntryExpr::MapEntry(me) = &entry.expr {
                    find_unknown_function(&me.key, out);
                    find_unknown_function(&me.value, out);
                }
            }
        }
        Expr::Comprehension(c) => {
            for x in [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                find_unknown_function(x, out);
            }
        }
        _ => {}
    }
}

/// The references a condition reads: (`head.field`, false) for selections, (`head`, true) for
/// bare identifiers.
pub(crate) fn condition_refs(cond: &Condition) -> Result<Vec<(Ref, bool)>, WdlError> {
    let program = check_cel_syntax(cond)?;
    let mut out = Vec::new();
    walk(program.expression(), &mut Vec::new(), &mut out, cond.pos);
    out.dedup();
    Ok(out)
}

fn walk(e: &cel::common::ast::IdedExpr, bound: &mut Vec<String>, out: &mut Vec<(Ref, bool)>, pos: Pos) {
    use cel::common::ast::Expr;
    match &e.expr {
        Expr::Select(s) => {
            if let Expr::Ident(head) = &s.operand.expr {
                if !bound.contains(head) {
                    out.push((
                        Ref {
                            head: head.clone(),
                            field: s.field.clone(),
                            pos,
                        },
                        false,
                    ));
                }
            } else {
                walk(&s.operand, bound, out, pos);
            }
        }
        Expr::Ident(name) if !bound.contains(name) => {
            out.push((
                Ref {
                    head: name.clone(),
                    field: String::new(),
                    pos,
                },
                true,
            ));
        }
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                walk(t, bound, out, pos);
            }
            for a in &c.args {
                walk(a, bound, out, pos);
            }
        }
        Expr::List(l) => l.elements.iter().for_each(|x| walk(x, bound, out, pos)),
        Expr::Map(m) => {
            for entry in &m.entries {
                if let cel::common::ast::EntryExpr::MapEntry(me) = &entry.expr {
                    walk(&me.key, bound, out, pos);
                    walk(&me.value, bound, out, pos);
                }
            }
        }
        Expr::Comprehension(c) => {
            walk(&c.iter_range, bound, out, pos);
            walk(&c.accu_init, bound, out, pos);
            let n = bound.len();
            bound.push(c.iter_var.clone());
            bound.push(c.accu_var.clone());
            walk(&c.loop_cond, bound, out, pos);
            walk(&c.loop_step, bound, out, pos);
            walk(&c.result, bound, out, pos);
            bound.truncate(n);
        }
        _ => {}
    }
}
