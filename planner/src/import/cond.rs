//! Translation of FaaSFlow's Python-like switch conditions to CEL.
//!
//! FaaSFlow evaluated its conditions with Python's `eval`; faasflow never evaluates code. The
//! subset FaaSFlow's files use (names like `INPUT.x`, comparisons, `and`/`or`/`not`, numbers,
//! strings, `True`/`False`/`None`) is translated token by token; anything else is rejected
//! with a message saying what could not be translated.

use crate::error::{ErrorKind, Pos, WdlError};

/// A token of a condition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Token {
    /// A dotted name such as `INPUT.x` or `LOCAL.y`.
    Name(String),
    /// Anything that is copied to CEL as is (numbers, strings, operators, parentheses).
    Verbatim(String),
}

/// Splits a Python-like condition into tokens, translating keywords and operators to CEL.
pub(crate) fn tokenize(text: &str, pos: Pos) -> Result<Vec<Token>, WdlError> {
    let unsupported = |what: &str| {
        WdlError::new(ErrorKind::Unsupported, pos, format!("cannot translate the condition `{text}` to CEL: {what}"))
            .expected("names like INPUT.x, numbers, strings, comparisons (< <= > >= == !=), + - * / %, and, or, not, True, False, None, parentheses")
            .hint("rewrite the workflow in faasflow's own WDL, where conditions are CEL (docs/wdl.md)")
    };
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let tok = match word.as_str() {
                "and" => Token::Verbatim("&&".into()),
                "or" => Token::Verbatim("||".into()),
                "not" => Token::Verbatim("!".into()),
                "True" | "true" => Token::Verbatim("true".into()),
                "False" | "false" => Token::Verbatim("false".into()),
                "None" => Token::Verbatim("null".into()),
                "in" => Token::Verbatim("in".into()),
                "is" | "lambda" | "if" | "else" | "for" | "import" => {
                    return Err(unsupported(&format!("`{word}` has no CEL equivalent here")));
                }
                _ if word.ends_with('.') || word.contains("..") => {
                    return Err(unsupported(&format!("`{word}` is not a name")));
                }
                _ => Token::Name(word),
            };
            out.push(tok);
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.' || chars[i] == 'e') {
                i += 1;
            }
            out.push(Token::Verbatim(chars[start..i].iter().collect()));
        } else if c == '\'' || c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            if i >= chars.len() {
                return Err(unsupported("a string is not closed"));
            }
            i += 1;
            out.push(Token::Verbatim(chars[start..i].iter().collect()));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            match two.as_str() {
                "**" | "//" => return Err(unsupported(&format!("the operator `{two}`"))),
                "<=" | ">=" | "==" | "!=" => {
                    out.push(Token::Verbatim(two));
                    i += 2;
                    continue;
                }
                _ => {}
            }
            match c {
                '<' | '>' | '+' | '-' | '*' | '/' | '%' | '(' | ')' => {
                    out.push(Token::Verbatim(c.to_string()));
                    i += 1;
                }
                _ => return Err(unsupported(&format!("the character `{c}`"))),
            }
        }
    }
    if out.is_empty() {
        return Err(unsupported("it is empty"));
    }
    Ok(out)
}

/// Joins translated tokens into CEL text.
pub(crate) fn join(tokens: &[String]) -> String {
    let mut s = String::new();
    for (i, t) in tokens.iter().enumerate() {
        if i > 0 && !(t == ")" || tokens[i - 1] == "(" || tokens[i - 1] == "!") {
            s.push(' ');
        }
        s.push_str(t);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tr(text: &str) -> Result<String, WdlError> {
        let toks = tokenize(text, Pos::new(1, 1))?;
        Ok(join(
            &toks
                .into_iter()
                .map(|t| match t {
                    Token::Name(n) => n.replace("INPUT.", "input."),
                    Token::Verbatim(v) => v,
                })
                .collect::<Vec<_>>(),
        ))
    }

    #[test]
    fn translates_python_operators() {
        assert_eq!(tr("INPUT.a < INPUT.b").unwrap(), "input.a < input.b");
        assert_eq!(
            tr("not (INPUT.a and INPUT.b) or INPUT.c == 'x'").unwrap(),
            "!(input.a && input.b) || input.c == 'x'"
        );
        assert_eq!(tr("INPUT.flag == True").unwrap(), "input.flag == true");
    }

    #[test]
    fn rejects_what_cel_cannot_say() {
        for bad in [
            "INPUT.a ** 2",
            "INPUT.a // 2",
            "INPUT.a is None",
            "x if y else z",
            "INPUT.a[0]",
            "'open",
            "",
        ] {
            let e = tr(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Unsupported, "{bad}");
        }
    }
}
