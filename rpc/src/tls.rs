//! The cluster's certificates and the TLS settings of the peer transport.
//!
//! `faasflow cluster init` makes a cluster CA ([`ClusterCa`]) and, for every node, a
//! certificate it signs ([`NodeIdentity`]): the node's name is the certificate's common name
//! and its only subject alternative name (a DNS name), and the certificate may serve as both
//! a TLS server and a TLS client. A daemon needs only its own identity and the CA's
//! certificate ([`ClusterTrust`], `ca.pem`), never the CA's key.
//!
//! Peers authenticate each other (mutual TLS 1.3): [`server_config`] requires a client
//! certificate signed by the cluster CA, [`client_config`] checks the server's certificate
//! against the same CA and the node name it dialled. Both speak the ALPN protocol [`ALPN`].
//!
//! The gRPC and HTTP API of the planner and of each daemon is served over TLS 1.3 as well
//! ([`api_server_config`], ALPN `h2` and `http/1.1` on one port, see [`crate::serve`]): a
//! client checks the server's certificate against the cluster CA and the node name it expects
//! (`planner`, or the worker's name), whatever address it dialled ([`api_client_config`]).
//! A client certificate is optional at the TLS layer (people and scrapers have none); the
//! servers decide per call what needs one (a worker's registration and every call to a daemon).
//!
//! What it does not do: revocation and certificate rotation (a node's certificate is valid for
//! [`VALIDITY`]; replacing the CA means re-issuing every node's certificate).

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData as _, SanType,
};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The ALPN protocol of daemon ↔ daemon connections.
pub const ALPN: &[u8] = b"faasflow-peer/1";

/// How long the CA's and the nodes' certificates are valid, from their creation.
pub const VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The planner's node name: its certificate's, which every client of the planner expects.
pub const PLANNER_NODE: &str = "planner";

/// The CA certificate's file in a cluster directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA key's file in a cluster directory.
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// Longest node name (one DNS label).
pub const MAX_NODE_NAME: usize = 63;
/// Longest cluster name.
pub const MAX_CLUSTER_NAME: usize = 64;

/// The CA certificate's common name is this prefix followed by the cluster's name.
const CA_CN_PREFIX: &str = "faasflow cluster CA: ";

/// Certificates are issued this long before their creation, for clocks a little behind.
const CLOCK_SKEW: Duration = Duration::from_secs(3600);

/// What went wrong with the cluster's certificates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file of the cluster directory is missing.
    #[error("{}: no such file; run `faasflow cluster init` to create the cluster's certificates", path.display())]
    Missing {
        /// The missing file.
        path: PathBuf,
    },
    /// A file could not be read or written.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: io::Error,
    },
    /// A file holds something else than expected.
    #[error("{}: {what}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// A node or cluster name that cannot be used.
    #[error("invalid {kind} name `{name}`: {why}")]
    Name {
        /// "node" or "cluster".
        kind: &'static str,
        /// The name as given.
        name: String,
        /// What a name must look like.
        why: String,
    },
    /// A certificate presented by a peer does not name a node.
    #[error("the peer's certificate does not name a faasflow node: {0}")]
    PeerCertificate(String),
    /// Making a key or certificate failed.
    #[error("cannot create a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The certificates could not be turned into a TLS configuration.
    #[error("cannot configure TLS: {0}")]
    Config(#[from] rustls::Error),
}

/// Installs the `ring` crypto provider as the process's default for rustls. Idempotent: a
/// provider installed before (by this or anything else) stays. The configurations built here
/// name their provider explicitly and do not depend on it.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Checks that `name` can name a node: a DNS label of lowercase letters, digits and `-`
/// (it is also part of file names), and not `ca`.
pub fn check_node_name(name: &str) -> Result<(), TlsError> {
    let bad = |why: &str| TlsError::Name {
        kind: "node",
        name: name.to_owned(),
        why: why.to_owned(),
    };
    if name.is_empty() || name.len() > MAX_NODE_NAME {
        return Err(bad(&format!("a node name has 1 to {MAX_NODE_NAME} characters")));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(bad("use lowercase letters, digits and `-` only"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(bad("a node name cannot start or end with `-`"));
    }
    if name == "ca" {
        return Err(bad("`ca` is the name of the cluster CA's files"));
    }
    Ok(())
}

fn check_cluster_name(name: &str) -> Result<(), TlsError> {
    if name.is_empty() || name.chars().count() > MAX_CLUSTER_NAME || name.chars().any(char::is_control) {
        return Err(TlsError::Name {
            kind: "cluster",
            name: name.to_owned(),
            why: format!("a cluster name has 1 to {MAX_CLUSTER_NAME} characters, none of them control characters"),
        });
    }
    Ok(())
}

/// The cluster CA: its certificate and its signing key.
pub struct ClusterCa {
    name: String,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key: KeyPair,
}

impl fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCa")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The CA's parameters as far as issuing needs them (subject, key usages, key identifier
/// method); they are rebuilt from the name when a CA is loaded, so they must depend on nothing else.
fn ca_params(cluster: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{CA_CN_PREFIX}{cluster}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn set_validity(params: &mut CertificateParams) -> Result<(), TlsError> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let at = |d: Duration| {
        let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        time::OffsetDateTime::from_unix_timestamp(secs).map_err(|_| rcgen::Error::Time)
    };
    params.not_before = at(now.saturating_sub(CLOCK_SKEW))?;
    params.not_after = at(now.saturating_add(VALIDITY))?;
    Ok(())
}

impl ClusterCa {
    /// Makes a new CA (an ECDSA P-256 key and a self-signed certificate) for the cluster `name`.
    pub fn generate(cluster_name: &str) -> Result<ClusterCa, TlsError> {
        check_cluster_name(cluster_name)?;
        let key = KeyPair::generate()?;
        let mut params = ca_params(cluster_name);
        set_validity(&mut params)?;
        let cert = params.self_signed(&key)?;
        Ok(ClusterCa {
            name: cluster_name.to_owned(),
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key,
        })
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The CA's certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// What a node needs to check its peers: the CA's certificate.
    pub fn trust(&self) -> ClusterTrust {
        ClusterTrust {
            cert_der: self.cert_der.clone(),
        }
    }

    /// Issues the certificate of node `node_name` (common name and DNS name), usable as TLS
    /// server and client.
    pub fn issue(&self, node_name: &str) -> Result<NodeIdentity, TlsError> {
        self.issue_with(node_name, &[])
    }

    /// Issues the certificate of node `node_name`, valid also for `addresses` (IP addresses
    /// or DNS names the node is reached at, so that a client that checks the address it
    /// dialled, such as `curl`, accepts it).
    pub fn issue_with(&self, node_name: &str, addresses: &[String]) -> Result<NodeIdentity, TlsError> {
        check_node_name(node_name)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_name);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::DnsName(node_name.try_into()?)];
        for address in addresses {
            let san = match address.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(address.as_str().try_into().map_err(|_| TlsError::Name {
                    kind: "address",
                    name: address.clone(),
                    why: "an address is an IP address or a DNS name".into(),
                })?),
            };
            if !params.subject_alt_names.contains(&san) {
                params.subject_alt_names.push(san);
            }
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params)?;
        let issuer = Issuer::new(ca_params(&self.name), &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        let key_pem = key.serialize_pem();
        Ok(NodeIdentity {
            name: node_name.to_owned(),
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_der: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            key_pem,
        })
    }

    /// Writes `ca.pem` and `ca-key.pem` (mode 0600) into `dir`, replacing them if they exist;
    /// returns the paths written.
    pub fn write_to(&self, dir: &Path) -> Result<Vec<PathBuf>, TlsError> {
        let cert = dir.join(CA_CERT_FILE);
        let key = dir.join(CA_KEY_FILE);
        write_file(&cert, self.cert_pem.as_bytes(), 0o644)?;
        write_file(&key, self.key.serialize_pem().as_bytes(), 0o600)?;
        Ok(vec![cert, key])
    }

    /// Whether `dir` holds a CA certificate or key.
    pub fn exists_in(dir: &Path) -> bool {
        dir.join(CA_CERT_FILE).exists() || dir.join(CA_KEY_FILE).exists()
    }

    /// Loads the CA written by [`ClusterCa::write_to`], checking that the key belongs to the
    /// certificate.
    pub fn load(dir: &Path) -> Result<ClusterCa, TlsError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = read_file(&cert_path)?;
        let cert_der = parse_cert(&cert_path, &cert_pem)?;
        let key =
            KeyPair::from_pem(&cert_pem_str(&key_path, &read_file(&key_path)?)?).map_err(|e| TlsError::Invalid {
                path: key_path.clone(),
                what: format!("not a private key in PEM: {e}"),
            })?;
        let invalid = |what: &str| TlsError::Invalid {
            path: cert_path.clone(),
            what: what.to_owned(),
        };
        let anchor = webpki::anchor_from_trusted_cert(&cert_der)
            .map_err(|e| invalid(&format!("not a certificate faasflow can use: {e}")))?;
        let cn = common_name(&anchor.subject).ok_or_else(|| invalid("the certificate has no common name"))?;
        let name = cn
            .strip_prefix(CA_CN_PREFIX)
            .ok_or_else(|| {
                invalid("not a faasflow cluster CA (its common name does not start with `faasflow cluster CA: `)")
            })?
            .to_owned();
        if webpki::spki_for_anchor(&anchor).as_ref() != key.subject_public_key_info().as_slice() {
            return Err(TlsError::Invalid {
                path: key_path,
                what: format!("this key does not belong to {}", cert_path.display()),
            });
        }
        // Issuing rebuilds the CA's subject from its name: it must come out byte for byte.
        let probe = ca_params(&name).self_signed(&key)?;
        let probe_anchor = webpki::anchor_from_trusted_cert(probe.der())
            .map_err(|e| invalid(&format!("cannot rebuild the CA's subject: {e}")))?;
        if probe_anchor.subject.as_ref() != anchor.subject.as_ref() {
            return Err(invalid(
                "the CA's subject was not written by faasflow; issue certificates with the tool that made it",
            ));
        }
        Ok(ClusterCa {
            name,
            cert_pem: cert_pem_str(&cert_path, &cert_pem)?,
            cert_der,
            key,
        })
    }
}

/// The CA certificate a node checks its peers against.
#[derive(Debug, Clone)]
pub struct ClusterTrust {
    cert_der: CertificateDer<'static>,
}

impl ClusterTrust {
    /// Loads `ca.pem` from `dir`.
    pub fn load(dir: &Path) -> Result<ClusterTrust, TlsError> {
        Self::load_file(&dir.join(CA_CERT_FILE))
    }

    /// Loads the CA certificate in the PEM file `path`.
    pub fn load_file(path: &Path) -> Result<ClusterTrust, TlsError> {
        let pem = read_file(path)?;
        Ok(ClusterTrust {
            cert_der: parse_cert(path, &pem)?,
        })
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert_der.clone())?;
        Ok(roots)
    }
}

/// A node's certificate and private key.
pub struct NodeIdentity {
    name: String,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key_pem: String,
    key_der: PrivateKeyDer<'static>,
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Clone for NodeIdentity {
    fn clone(&self) -> Self {
        NodeIdentity {
            name: self.name.clone(),
            cert_pem: self.cert_pem.clone(),
            cert_der: self.cert_der.clone(),
            key_pem: self.key_pem.clone(),
            key_der: self.key_der.clone_key(),
        }
    }
}

impl NodeIdentity {
    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The node's certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The file names of node `name`'s certificate and key in a cluster directory.
    pub fn file_names(name: &str) -> (String, String) {
        (format!("{name}.pem"), format!("{name}-key.pem"))
    }

    /// Writes `<name>.pem` and `<name>-key.pem` (mode 0600) into `dir`; returns the paths.
    pub fn write_to(&self, dir: &Path) -> Result<Vec<PathBuf>, TlsError> {
        let (cert, key) = Self::file_names(&self.name);
        let (cert, key) = (dir.join(cert), dir.join(key));
        write_file(&cert, self.cert_pem.as_bytes(), 0o644)?;
        write_file(&key, self.key_pem.as_bytes(), 0o600)?;
        Ok(vec![cert, key])
    }

    /// Loads node `name`'s certificate and key from `dir`, checking that the certificate names
    /// the node.
    pub fn load(dir: &Path, name: &str) -> Result<NodeIdentity, TlsError> {
        check_node_name(name)?;
        let (cert_file, key_file) = Self::file_names(name);
        let (cert_path, key_path) = (dir.join(cert_file), dir.join(key_file));
        let cert_pem = read_file(&cert_path)?;
        let cert_der = parse_cert(&cert_path, &cert_pem)?;
        let key_pem = read_file(&key_path)?;
        let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Invalid {
            path: key_path.clone(),
            what: format!("not a private key in PEM: {e}"),
        })?;
        let named = node_name_of(&cert_der).map_err(|e| TlsError::Invalid {
            path: cert_path.clone(),
            what: e.to_string(),
        })?;
        if named != name {
            return Err(TlsError::Invalid {
                path: cert_path,
                what: format!("the certificate is node `{named}`'s, not `{name}`'s"),
            });
        }
        Ok(NodeIdentity {
            name: name.to_owned(),
            cert_pem: cert_pem_str(&cert_path, &cert_pem)?,
            cert_der,
            key_pem: cert_pem_str(&key_path, &key_pem)?,
            key_der,
        })
    }
}

/// The node a (verified) certificate names: its common name, which must also be a DNS name
/// it is valid for.
pub fn node_name_of(cert: &CertificateDer<'_>) -> Result<String, TlsError> {
    let bad = |what: String| TlsError::PeerCertificate(what);
    // Used only to parse the subject out of a certificate rustls has already verified.
    let parsed = webpki::anchor_from_trusted_cert(cert).map_err(|e| bad(format!("cannot parse it: {e}")))?;
    let cn = common_name(&parsed.subject).ok_or_else(|| bad("it has no common name".into()))?;
    check_node_name(&cn).map_err(|e| bad(e.to_string()))?;
    let dns = ServerName::try_from(cn.clone()).map_err(|e| bad(format!("`{cn}`: {e}")))?;
    let ee = webpki::EndEntityCert::try_from(cert).map_err(|e| bad(format!("cannot parse it: {e}")))?;
    ee.verify_is_valid_for_subject_name(&dns)
        .map_err(|e| bad(format!("its common name `{cn}` is not among its DNS names: {e}")))?;
    Ok(cn)
}

/// The TLS server settings of node `identity`: TLS 1.3, ALPN [`ALPN`], and a client
/// certificate signed by the cluster CA is required.
pub fn server_config(identity: &NodeIdentity, trust: &ClusterTrust) -> Result<ServerConfig, TlsError> {
    tls13_server(identity, trust, false, &[ALPN])
}

/// TLS 1.3 server settings of `identity` with ALPN `alpn`: clients present a certificate of
/// the cluster CA, or (`optional_clients`) may present none.
fn tls13_server(
    identity: &NodeIdentity,
    trust: &ClusterTrust,
    optional_clients: bool,
    alpn: &[&[u8]],
) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(trust.roots()?), provider.clone());
    if optional_clients {
        verifier = verifier.allow_unauthenticated();
    }
    let verifier = verifier.build().map_err(|e| rustls::Error::General(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![identity.cert_der.clone()], identity.key_der.clone_key())?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The TLS client settings of node `identity`: TLS 1.3, ALPN [`ALPN`], servers checked against
/// the cluster CA (and the node name dialled), this node's certificate presented.
pub fn client_config(identity: &NodeIdentity, trust: &ClusterTrust) -> Result<ClientConfig, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(trust.roots()?)
        .with_client_auth_cert(vec![identity.cert_der.clone()], identity.key_der.clone_key())?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// ALPN of HTTP/2 (gRPC, and HTTP clients that speak it).
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN of HTTP/1.1 (`curl --http1.1`, most HTTP libraries).
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The TLS server settings of the gRPC and HTTP API of node `identity`: TLS 1.3, ALPN `h2`
/// and `http/1.1`, and a client certificate optional but, when presented, checked against the
/// cluster CA (the node it names is then known to every call, [`crate::serve::Peer`]).
pub fn api_server_config(identity: &NodeIdentity, trust: &ClusterTrust) -> Result<ServerConfig, TlsError> {
    tls13_server(identity, trust, true, &[ALPN_H2, ALPN_HTTP1])
}

/// The TLS client settings of a caller of the gRPC or HTTP API: TLS 1.3, servers checked
/// against the cluster CA, `identity`'s certificate presented when there is one (a node; a
/// person's client has none), ALPN `alpn`.
pub fn api_client_config(
    trust: &ClusterTrust,
    identity: Option<&NodeIdentity>,
    alpn: &[&[u8]],
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(trust.roots()?);
    let mut config = match identity {
        Some(identity) => {
            builder.with_client_auth_cert(vec![identity.cert_der.clone()], identity.key_der.clone_key())?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// What a failed TLS handshake with `what` (`the planner`, ``node `w` ``) at `addr` means,
/// said for the person who runs the client: the cause and what to do.
pub fn handshake_failure(what: &str, addr: &str, e: &io::Error) -> String {
    use rustls::CertificateError as C;
    let tls = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature)) => format!(
            "{what} at {addr}: its certificate is not signed by the cluster CA this client trusts; give the client \
             the cluster's ca.pem (the one `faasflow cluster init` wrote with this cluster's certificates)"
        ),
        Some(rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. })) => format!(
            "the server at {addr} presented a certificate that is not {what}'s (another node of the cluster answers there?)"
        ),
        Some(rustls::Error::InvalidCertificate(cause)) => {
            format!("{what} at {addr}: its certificate is not valid: {cause:?}")
        }
        Some(
            rustls::Error::InvalidMessage(_)
            | rustls::Error::InappropriateMessage { .. }
            | rustls::Error::InappropriateHandshakeMessage { .. },
        ) => format!(
            "{what} at {addr} does not speak TLS (serving without it, --insecure-loopback? then call it with \
             --insecure-loopback too)"
        ),
        Some(rustls::Error::AlertReceived(alert)) => {
            format!("{what} at {addr} refused the TLS handshake ({alert:?}): does it take this client's certificate?")
        }
        Some(other) => format!("TLS with {what} at {addr} failed: {other}"),
        None if matches!(e.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset) => {
            format!("{what} at {addr} closed the connection during the TLS handshake (does it serve TLS there?)")
        }
        None => format!("TLS with {what} at {addr} failed: {e}"),
    }
}

/// Largest certificate or key file read.
const MAX_PEM_BYTES: u64 = 1 << 20;

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|f| f.take(MAX_PEM_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|cause| match cause.kind() {
            io::ErrorKind::NotFound => TlsError::Missing { path: path.to_owned() },
            _ => TlsError::Io {
                path: path.to_owned(),
                cause,
            },
        })?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::Invalid {
            path: path.to_owned(),
            what: format!(
                "larger than {} MiB: not a certificate or key; run `faasflow cluster init` to create them",
                MAX_PEM_BYTES >> 20
            ),
        });
    }
    Ok(bytes)
}

fn cert_pem_str(path: &Path, bytes: &[u8]) -> Result<String, TlsError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| TlsError::Invalid {
        path: path.to_owned(),
        what: "not PEM (not UTF-8 text)".into(),
    })
}

fn parse_cert(path: &Path, pem: &[u8]) -> Result<CertificateDer<'static>, TlsError> {
    CertificateDer::from_pem_slice(pem).map_err(|e| TlsError::Invalid {
        path: path.to_owned(),
        what: format!("no certificate in PEM: {e}"),
    })
}

/// Writes `bytes` to `path` with `mode` through a temporary file renamed over it, so that a
/// reader never sees half a file and a key is never readable by others, even for a moment.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let io_err = |cause| TlsError::Io {
        path: path.to_owned(),
        cause,
    };
    // A new file of its own (never one that is there, nor through a link), renamed over `path`.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut file| {
            file.set_permissions(fs::Permissions::from_mode(mode))?;
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map_err(io_err)
}

/// The first common name in an X.509 `Name` (given with or without its outer SEQUENCE), if it
/// is a UTF-8 or printable string. Never panics on malformed input.
fn common_name(name: &[u8]) -> Option<String> {
    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const OID: u8 = 0x06;
    const CN_OID: &[u8] = &[0x55, 0x04, 0x03];
    let mut rdns = name;
    if rdns.first() == Some(&SEQUENCE) {
        let (_, inner) = read_tlv(&mut rdns)?;
        rdns = inner;
    }
    while !rdns.is_empty() {
        let (tag, mut set) = read_tlv(&mut rdns)?;
        if tag != SET {
            return None;
        }
        while !set.is_empty() {
            let (tag, mut attr) = read_tlv(&mut set)?;
            if tag != SEQUENCE {
                return None;
            }
            let (oid_tag, oid) = read_tlv(&mut attr)?;
            let (value_tag, value) = read_tlv(&mut attr)?;
            // UTF8String (12) or PrintableString (19).
            if oid_tag == OID && oid == CN_OID && (value_tag == 12 || value_tag == 19) {
                return String::from_utf8(value.to_vec()).ok();
            }
        }
    }
    None
}

/// Reads one DER tag-length-value (single-byte tags, lengths up to 4 bytes) from the front of
/// `input`.
fn read_tlv<'a>(input: &mut &'a [u8]) -> Option<(u8, &'a [u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, after) = rest.split_at(n);
        rest = after;
        bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if rest.len() < len {
        return None;
    }
    let (value, after) = rest.split_at(len);
    *input = after;
    Some((tag, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_name_never_panics_and_finds_the_cn() {
        let ca = ClusterCa::generate("t").unwrap();
        let anchor = webpki::anchor_from_trusted_cert(&ca.cert_der).unwrap();
        assert_eq!(common_name(&anchor.subject).as_deref(), Some("faasflow cluster CA: t"));
        let subject = anchor.subject.as_ref();
        for cut in 0..subject.len() {
            let _ = common_name(&subject[..cut]);
        }
        assert_eq!(common_name(&[0x31, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn node_names_are_checked() {
        for good in ["planner", "worker-0", "a", &"x".repeat(63)] {
            check_node_name(good).unwrap();
        }
        for bad in ["", "ca", "Worker", "-a", "a-", "a.b", "a/b", "../x", &"x".repeat(64)] {
            assert!(check_node_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
