//! Switch conditions: CEL over `input` and the JSON outputs of earlier steps.

use std::collections::HashMap;
use std::sync::Arc;

use cel::objects::{Key, Map};

/// Converts JSON to a CEL value. Integers that fit `i64` become `Int` (so that `x > 10`
/// compares like with like); other numbers become `Float`.
pub(crate) fn to_cel(v: &serde_json::Value) -> cel::Value {
    use serde_json::Value as J;
    match v {
        J::Null => cel::Value::Null,
        J::Bool(b) => cel::Value::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => match n.as_u64() {
                Some(u) => cel::Value::UInt(u),
                None => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
        },
        J::String(s) => cel::Value::String(Arc::new(s.clone())),
        J::Array(a) => cel::Value::List(Arc::new(a.iter().map(to_cel).collect())),
        J::Object(o) => cel::Value::Map(Map {
            map: Arc::new(
                o.iter()
                    .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
                    .collect::<HashMap<_, _>>(),
            ),
        }),
    }
}

/// Why a switch condition failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CondError {
    #[error("condition `{condition}` is not valid CEL: {cause}")]
    Invalid { condition: String, cause: String },
    #[error("condition `{condition}` gave {value}, not a bool (true or false)")]
    NotBool { condition: String, value: String },
    #[error("condition `{condition}` could not be evaluated: {cause}")]
    Eval { condition: String, cause: String },
}

/// Compiles the conditions of a switch.
pub(crate) fn compile(conditions: &[&str]) -> Result<Vec<cel::Program>, CondError> {
    conditions
        .iter()
        .map(|c| {
            cel::Program::compile(c).map_err(|e| CondError::Invalid {
                condition: (*c).to_owned(),
                cause: e.to_string(),
            })
        })
        .collect()
}

/// Evaluates the cases of a switch in order; returns the chosen case (`cases.len()` is the
/// default) or a message naming the condition that could not be evaluated.
pub(crate) fn choose(
    cases: &[(&str, &cel::Program)],
    variables: &[(String, serde_json::Value)],
) -> Result<u32, CondError> {
    let mut ctx = cel::Context::default();
    for (name, value) in variables {
        ctx.add_variable_from_value(name.clone(), to_cel(value));
    }
    for (i, (cond, program)) in cases.iter().enumerate() {
        match program.execute(&ctx) {
            Ok(cel::Value::Bool(true)) => return Ok(i as u32),
            Ok(cel::Value::Bool(false)) => {}
            Ok(other) => {
                return Err(CondError::NotBool {
                    condition: (*cond).to_owned(),
                    value: format!("{other:?}"),
                });
            }
            Err(e) => {
                return Err(CondError::Eval {
                    condition: (*cond).to_owned(),
                    cause: e.to_string(),
                });
            }
        }
    }
    Ok(cases.len() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(conds: &[&str], vars: &[(String, serde_json::Value)]) -> Result<u32, CondError> {
        let programs = compile(conds)?;
        let cases: Vec<_> = conds.iter().copied().zip(programs.iter()).collect();
        choose(&cases, vars)
    }

    #[test]
    fn chooses_first_true_case_or_default() {
        let vars = vec![("input".to_owned(), json!({"x": 1, "y": 2}))];
        assert_eq!(eval(&["input.x < input.y"], &vars), Ok(0));
        assert_eq!(eval(&["input.x > input.y", "input.x > 10"], &vars), Ok(2));
        assert_eq!(eval(&["input.x == 1.0 || input.y > 1u"], &vars), Ok(0));
    }

    #[test]
    fn errors_are_precise() {
        let vars = vec![("input".to_owned(), json!({"x": 1}))];
        let e = eval(&["input.x + 1"], &vars).unwrap_err();
        assert!(
            matches!(&e, CondError::NotBool { condition, .. } if condition == "input.x + 1"),
            "{e:?}"
        );
        assert!(e.to_string().contains("not a bool"), "{e}");
        let e = eval(&["nope.flag"], &vars).unwrap_err();
        assert!(matches!(e, CondError::Eval { .. }), "{e:?}");
        assert!(e.to_string().contains("could not be evaluated"), "{e}");
        let e = eval(&["a and b"], &vars).unwrap_err();
        assert!(matches!(e, CondError::Invalid { .. }), "{e:?}");
        assert!(e.to_string().contains("not valid CEL"), "{e}");
    }
}
