//! [`Error`]: what a function returns when it fails.

use std::fmt;

/// Why a function failed: a message, reported to the daemon as the call's failure
/// (`Complete { status: Failed, message }`) and shown in the invocation's trace.
///
/// Build one from a string, or from any error with `?` (I/O, JSON, UTF-8 and number parsing
/// convert on their own) or [`Error::new`]:
/// ```
/// use faasflow_sdk::Error;
///
/// fn parse(text: &str) -> Result<u32, Error> {
///     if text.is_empty() {
///         return Err("the input is empty".into());
///     }
///     let n: u32 = text.trim().parse()?;
///     let n = n.checked_mul(2).ok_or_else(|| Error::new(format_args!("{n} is too large to double")))?;
///     Ok(n)
/// }
/// assert_eq!(parse("21").unwrap(), 42);
/// assert_eq!(parse("").unwrap_err().message(), "the input is empty");
/// assert!(parse("x").unwrap_err().message().contains("invalid digit"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    /// An error with `message` (anything that displays: a string, another error, `format_args!`).
    /// ```
    /// let e = faasflow_sdk::Error::new(std::io::Error::other("disk on fire"));
    /// assert_eq!(e.to_string(), "disk on fire");
    /// ```
    pub fn new(message: impl fmt::Display) -> Error {
        Error {
            message: message.to_string(),
        }
    }

    /// The message.
    /// ```
    /// assert_eq!(faasflow_sdk::Error::from("no").message(), "no");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<&str> for Error {
    fn from(message: &str) -> Error {
        Error::new(message)
    }
}

impl From<String> for Error {
    fn from(message: String) -> Error {
        Error { message }
    }
}

macro_rules! from_std_errors {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Error {
                Error::new(e)
            }
        }
    )*};
}

from_std_errors!(
    std::io::Error,
    serde_json::Error,
    std::str::Utf8Error,
    std::string::FromUtf8Error,
    std::num::ParseIntError,
    std::num::ParseFloatError,
    std::fmt::Error,
);
