//! The cluster's API token: every gRPC call to the planner or a daemon carries it as
//! `authorization: Bearer <token>`, and a server started with a token refuses calls without
//! it (`UNAUTHENTICATED`). One token per cluster, made by `faasflow cluster init` (the file
//! `token`, mode 0600, beside the certificates); daemons authenticate each other with mutual
//! TLS instead (`faasflow_daemon::io::tls`).
//!
//! A [`Token`] never appears in logs or errors: its `Debug` and `Display` say only that it is
//! a token. It is compared in constant time.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// The file a cluster's token is kept in, in the cluster's directory.
pub const TOKEN_FILE: &str = "token";

/// Bytes of randomness in a generated token (hex-encoded: twice as many characters).
const TOKEN_BYTES: usize = 32;

/// Largest token file read (a token has at most 1024 characters, and white space around it).
pub const MAX_TOKEN_FILE: usize = 4096;

/// Errors reading or making a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The token file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The token file holds something that is not a token.
    #[error(
        "{path} does not hold a token (16 to 1024 characters of A-Z, a-z, 0-9, `-`, `_`, `.`); make one with `faasflow cluster init`"
    )]
    Malformed {
        /// The file.
        path: String,
    },
}

/// A secret that authenticates calls to the cluster's gRPC API.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Arc<str>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<secret>)")
    }
}

impl Token {
    /// A new random token (from the kernel's random source).
    pub fn generate() -> Result<Token, AuthError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(|source| AuthError::Io {
                path: "/dev/urandom".into(),
                source,
            })?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Token(hex.into()))
    }

    /// The token in `text` (surrounding white space ignored), if it is one.
    pub fn parse(text: &str) -> Option<Token> {
        let t = text.trim();
        let valid = (16..=1024).contains(&t.len())
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        valid.then(|| Token(t.into()))
    }

    /// Reads a token file (at most [`MAX_TOKEN_FILE`] bytes: a longer file holds no token).
    pub fn load(path: &Path) -> Result<Token, AuthError> {
        let name = || path.display().to_string();
        let io = |source| AuthError::Io { path: name(), source };
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_TOKEN_FILE as u64 + 1).read_to_string(&mut text))
            .map_err(io)?;
        if text.len() > MAX_TOKEN_FILE {
            return Err(AuthError::Malformed { path: name() });
        }
        Token::parse(&text).ok_or_else(|| AuthError::Malformed { path: name() })
    }

    /// Writes the token to `path`, readable by its owner alone: into a new file beside it,
    /// renamed over it (a symbolic link at `path` is replaced, never followed).
    pub fn write(&self, path: &Path) -> Result<(), AuthError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let err = |source| AuthError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = std::path::PathBuf::from(tmp);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(format!("{}\n", self.0).as_bytes()))
            .and_then(|()| std::fs::rename(&tmp, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(err)
    }

    fn header(&self) -> MetadataValue<Ascii> {
        // Only visible ASCII is accepted by `parse` and made by `generate`.
        MetadataValue::try_from(format!("Bearer {}", self.0)).unwrap_or_else(|_| MetadataValue::from_static(""))
    }

    /// Whether `presented` is this token, in time independent of where they differ.
    fn matches(&self, presented: &[u8]) -> bool {
        let mine = self.0.as_bytes();
        if mine.len() != presented.len() {
            return false;
        }
        mine.iter().zip(presented).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// Client side: adds the token to every call (nothing without one).
#[derive(Clone, Debug, Default)]
pub struct Attach(Option<Token>);

impl Attach {
    /// Attaches `token` (or nothing).
    pub fn new(token: Option<Token>) -> Attach {
        Attach(token)
    }
}

impl Interceptor for Attach {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(t) = &self.0 {
            request.metadata_mut().insert("authorization", t.header());
        }
        Ok(request)
    }
}

/// A channel whose calls carry the cluster's token.
pub type AuthChannel = InterceptedService<Channel, Attach>;

/// Server side: refuses calls without the token (accepts every call without one). `server`
/// names the server in the error (`the planner`, `worker \`w-1\``).
#[derive(Clone, Debug)]
pub struct Check {
    token: Option<Token>,
    server: Arc<str>,
    planner_only: bool,
}

impl Check {
    /// Checks for `token` (or nothing).
    pub fn new(token: Option<Token>, server: &str) -> Check {
        Check {
            token,
            server: server.into(),
            planner_only: false,
        }
    }

    /// Also refuses a call over TLS whose client did not present the planner's certificate
    /// (a daemon's API is the planner's alone: not for people, nor for other workers, which
    /// speak to it over the peer transport).
    pub fn planner_only(mut self) -> Check {
        self.planner_only = true;
        self
    }

    /// Whether a call that came from `peer` may go on (see [`Check::planner_only`]).
    pub fn check_peer(&self, peer: Option<&crate::serve::Peer>) -> Result<(), Status> {
        let Some(p) = peer.filter(|p| self.planner_only && p.tls) else {
            return Ok(());
        };
        match p.node.as_deref() {
            Some(crate::tls::PLANNER_NODE) => Ok(()),
            Some(node) => Err(Status::permission_denied(format!(
                "{} takes calls only from the planner, not from node `{node}`",
                self.server
            ))),
            None => Err(Status::permission_denied(format!(
                "{} takes calls only from the planner: the caller presented no certificate of the cluster CA",
                self.server
            ))),
        }
    }
}

impl Check {
    /// Whether a call whose `authorization` header is `header` may go on (gRPC metadata or
    /// an HTTP header alike).
    pub fn check(&self, header: Option<&[u8]>) -> Result<(), Status> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        match header.and_then(|v| v.strip_prefix(b"Bearer ")) {
            Some(p) if token.matches(p) => Ok(()),
            Some(_) => Err(Status::unauthenticated(format!(
                "{} refused the call: its token is not the cluster's; use the `token` file of the cluster's directory (`--dir`, or --token-file)",
                self.server
            ))),
            None => Err(Status::unauthenticated(format!(
                "{} needs the cluster's token with every call (`authorization: Bearer …`): pass the cluster's directory (`--dir`) or --token-file",
                self.server
            ))),
        }
    }
}

impl Interceptor for Check {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.check_peer(crate::serve::Peer::of(&request))?;
        self.check(request.metadata().get("authorization").map(|v| v.as_bytes()))?;
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(header: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(h) = header {
            r.metadata_mut()
                .insert("authorization", MetadataValue::try_from(h).expect("ascii"));
        }
        r
    }

    #[test]
    fn the_server_takes_its_token_and_refuses_the_rest() {
        let token = Token::generate().expect("token");
        let other = Token::generate().expect("token");
        assert_ne!(token, other);
        let mut check = Check::new(Some(token.clone()), "the planner");
        // What a client with the token sends passes.
        let sent = Attach::new(Some(token.clone())).call(Request::new(())).expect("attach");
        assert!(check.call(sent).is_ok());
        // Another token, none, a wrong scheme or a truncated token are refused.
        let wrong = Attach::new(Some(other)).call(Request::new(())).expect("attach");
        let e = check.call(wrong).expect_err("another cluster's token");
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(e.message().contains("not the cluster's"), "{}", e.message());
        let e = check.call(request(None)).expect_err("no token");
        assert!(
            e.message().starts_with("the planner needs the cluster's token"),
            "{}",
            e.message()
        );
        let raw = token.0.to_string();
        assert!(check.call(request(Some(&format!("Basic {raw}")))).is_err());
        assert!(check.call(request(Some(&format!("Bearer {}", &raw[1..])))).is_err());
        // Without a token, a server takes every call.
        assert!(Check::new(None, "x").call(request(None)).is_ok());
    }

    #[test]
    fn a_daemon_takes_calls_over_tls_only_from_the_planner() {
        let mut check = Check::new(None, "worker `w`").planner_only();
        let from = |node: Option<&str>, tls: bool| {
            let mut r = Request::new(());
            r.extensions_mut().insert(crate::serve::Peer {
                addr: None,
                node: node.map(str::to_owned),
                tls,
            });
            r
        };
        assert!(check.call(from(Some("planner"), true)).is_ok());
        let e = check.call(from(None, true)).expect_err("no certificate");
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().contains("only from the planner"), "{}", e.message());
        let e = check.call(from(Some("worker-1"), true)).expect_err("another worker");
        assert!(e.message().contains("not from node `worker-1`"), "{}", e.message());
        // Plain loopback (`--insecure-loopback`) has no certificates to ask for.
        assert!(check.call(from(None, false)).is_ok());
        // The planner takes people's calls.
        assert!(Check::new(None, "the planner").call(from(None, true)).is_ok());
    }

    #[test]
    fn tokens_round_trip_through_their_file_and_never_show() {
        let dir = std::env::temp_dir().join(format!("faasflow-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join(TOKEN_FILE);
        let token = Token::generate().expect("token");
        token.write(&path).expect("write");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Token::load(&path).expect("load"), token);
        assert_eq!(format!("{token:?}"), "Token(<secret>)");
        std::fs::write(&path, "short").expect("write");
        let e = Token::load(&path).expect_err("malformed");
        assert!(e.to_string().contains("does not hold a token"), "{e}");
        assert!(matches!(Token::load(&dir.join("missing")), Err(AuthError::Io { .. })));
        std::fs::remove_dir_all(&dir).expect("clean");
    }

    #[test]
    fn a_token_written_over_a_link_replaces_the_link_not_its_target() {
        let dir = std::env::temp_dir().join(format!("faasflow-token-link-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let victim = dir.join("notes.txt");
        std::fs::write(&victim, "mine").expect("write");
        let path = dir.join(TOKEN_FILE);
        std::os::unix::fs::symlink(&victim, &path).expect("link");
        let token = Token::generate().expect("token");
        token.write(&path).expect("write");
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "mine");
        assert!(std::fs::symlink_metadata(&path).expect("meta").is_file());
        assert_eq!(Token::load(&path).expect("load"), token);
        std::fs::remove_dir_all(&dir).expect("clean");
    }
}
