//! Why an invocation failed: what [`Action::Finished`](super::Action::Finished) carries when it
//! did not end with its outputs. Its text is the report's `error`.

use std::fmt;

use crate::dag::FailureKind;

/// Why an invocation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// A step failed for good: out of attempts, or of a kind its `retry.on` does not retry.
    Step {
        /// The step's name.
        step: String,
        /// The foreach element, for a step inside a foreach.
        element: Option<u32>,
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's error.
        error: String,
        /// When the step had attempts left but `retry.on` does not list the failure's kind:
        /// that kind and the kinds it lists.
        not_retried: Option<(FailureKind, Vec<FailureKind>)>,
    },
    /// A switch's conditions could not be evaluated.
    Switch {
        /// The switch's name.
        switch: String,
        /// What the evaluation said.
        cause: String,
    },
    /// A foreach's list is not a JSON list.
    NotAList {
        /// The foreach's name.
        foreach: String,
        /// What it got instead.
        got: &'static str,
    },
    /// The invocation's deadline passed.
    Deadline {
        /// The deadline, in milliseconds from the start.
        limit_ms: u64,
        /// The steps still open (at most a few are named).
        open: Vec<String>,
    },
    /// Decided outside this engine: a step of another worker failed for good, a worker was
    /// lost, the caller gave up. The text says which.
    Aborted(String),
}

impl Failure {
    /// Whether the invocation ran out of time (its text starts with
    /// [`DEADLINE_PASSED`](super::DEADLINE_PASSED), also when another worker's engine decided
    /// it).
    pub fn is_deadline(&self) -> bool {
        match self {
            Failure::Deadline { .. } => true,
            Failure::Aborted(why) => why.starts_with(super::DEADLINE_PASSED),
            _ => false,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Step {
                step,
                element,
                attempts,
                error,
                not_retried,
            } => {
                write!(f, "step `{step}`")?;
                if let Some(e) = element {
                    write!(f, " (element {e})")?;
                }
                f.write_str(" failed")?;
                if *attempts != 1 {
                    write!(f, " after {attempts} attempts")?;
                }
                write!(f, ": {error}")?;
                if let Some((kind, on)) = not_retried {
                    let on: Vec<&str> = on.iter().map(|k| k.as_str()).collect();
                    write!(
                        f,
                        " (not retried: a failure of kind `{}`, and `retry.on` is [{}])",
                        kind.as_str(),
                        on.join(", ")
                    )?;
                }
                Ok(())
            }
            Failure::Switch { switch, cause } => write!(f, "switch `{switch}` failed: {cause}"),
            Failure::NotAList { foreach, got } => {
                write!(f, "foreach `{foreach}` needs a JSON list to iterate over, got {got}")
            }
            Failure::Deadline { limit_ms, open } => {
                write!(f, "{} of {limit_ms} ms", super::DEADLINE_PASSED)?;
                if !open.is_empty() {
                    let names = crate::text::list_names(open.iter().map(String::as_str), 8);
                    write!(f, "; still open: {names}")?;
                }
                Ok(())
            }
            Failure::Aborted(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Failure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_failure_says_where_how_often_and_why_it_was_not_retried() {
        let f = Failure::Step {
            step: "resize".into(),
            element: Some(3),
            attempts: 2,
            error: "out of memory".into(),
            not_retried: Some((FailureKind::Crash, vec![FailureKind::Error, FailureKind::Timeout])),
        };
        assert_eq!(
            f.to_string(),
            "step `resize` (element 3) failed after 2 attempts: out of memory \
             (not retried: a failure of kind `crash`, and `retry.on` is [error, timeout])"
        );
        let once = Failure::Step {
            step: "a".into(),
            element: None,
            attempts: 1,
            error: "boom".into(),
            not_retried: None,
        };
        assert_eq!(once.to_string(), "step `a` failed: boom");
    }

    #[test]
    fn a_deadline_is_recognised_also_when_another_engine_decided_it() {
        let d = Failure::Deadline {
            limit_ms: 50,
            open: vec!["b".into(), "c".into()],
        };
        assert!(d.to_string().starts_with(super::super::DEADLINE_PASSED));
        assert!(d.to_string().ends_with("of 50 ms; still open: b, c"), "{d}");
        assert!(Failure::Aborted(d.to_string()).is_deadline());
        assert!(!Failure::Aborted("worker `w1` was lost".into()).is_deadline());
        assert_eq!(
            Failure::Deadline {
                limit_ms: 5,
                open: vec![]
            }
            .to_string(),
            format!("{} of 5 ms", super::super::DEADLINE_PASSED)
        );
    }
}
