//! Reading gRPC statuses: their whole chain of causes, and whether a failure was the
//! connection's or the peer's own answer.

use tonic::Status;

/// A status with the chain of causes behind it (tonic keeps transport errors in the source).
pub fn describe(status: &Status) -> String {
    let mut text = status.message().to_owned();
    append_causes(&mut text, std::error::Error::source(status));
    text
}

/// An error and its causes, on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    append_causes(&mut text, e.source());
    text
}

/// Appends each cause in turn that the text does not already say.
fn append_causes(text: &mut String, mut source: Option<&(dyn std::error::Error + 'static)>) {
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
}

/// True when a call failed in the connection (refused, reset, closed), not in the peer: the
/// peer is gone or unreachable. A peer's own refusals carry no source error.
pub fn is_transport(status: &Status) -> bool {
    status.code() == tonic::Code::Unavailable || std::error::Error::source(status).is_some()
}
