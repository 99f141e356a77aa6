//! `faasflow cluster`: the cluster's certificates and API token; `up` makes those of a local
//! cluster here too.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use faasflow_daemon::io::tls::{CA_CERT_FILE, CA_KEY_FILE, ClusterCa, NodeIdentity, check_node_name};
use faasflow_rpc::auth::{TOKEN_FILE, Token};
use faasflow_rpc::channel::Transport;
use faasflow_rpc::tls::{ALPN_H2, ClusterTrust, PLANNER_NODE, api_client_config};

use crate::Failure;

/// Most nodes `cluster init --nodes` makes certificates for.
const MAX_NODES: usize = 1000;

#[derive(Debug, clap::Args)]
pub(crate) struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ClusterCommand {
    /// Create the cluster CA and a certificate for each node: daemons accept only peers with
    /// a certificate from this CA.
    Init(InitArgs),
}

#[derive(Debug, clap::Args)]
struct InitArgs {
    /// Directory to write ca.pem, ca-key.pem and <node>.pem, <node>-key.pem into.
    #[arg(long, default_value = "faasflow-cluster")]
    dir: PathBuf,
    /// The planner and N workers (worker-0 … worker-N−1).
    #[arg(long, value_name = "N", conflicts_with = "node")]
    nodes: Option<usize>,
    /// A node to issue a certificate for (repeat for more); replaces the default nodes.
    #[arg(long, value_name = "NAME")]
    node: Vec<String>,
    /// The cluster's name, written into the CA certificate.
    #[arg(long, default_value = "faasflow")]
    name: String,
    /// Replace an existing CA (every node then needs its new certificate).
    #[arg(long)]
    force: bool,
    /// NODE=HOST: node NODE's certificate is valid for HOST too (an IP address or DNS name
    /// clients reach it at, e.g. `planner=10.0.0.5`: `curl` checks the address it dialled;
    /// faasflow's own clients check the node name). Repeat for more.
    #[arg(long, value_name = "NODE=HOST")]
    address: Vec<String>,
}

pub(crate) fn run(args: &ClusterArgs) -> Result<(), Failure> {
    match &args.command {
        ClusterCommand::Init(init_args) => init(init_args),
    }
}

fn node_names(args: &InitArgs) -> Result<Vec<String>, Failure> {
    let names = if args.node.is_empty() {
        let workers = args.nodes.unwrap_or(3);
        if workers > MAX_NODES {
            return Err(Failure::Input(format!("error: --nodes must be at most {MAX_NODES}")));
        }
        std::iter::once("planner".to_owned())
            .chain((0..workers).map(|i| format!("worker-{i}")))
            .collect()
    } else {
        args.node.clone()
    };
    for (i, name) in names.iter().enumerate() {
        check_node_name(name).map_err(|e| Failure::Input(format!("error: {e}")))?;
        if names[..i].contains(name) {
            return Err(Failure::Input(format!("error: node `{name}` is named twice")));
        }
    }
    Ok(names)
}

fn init(args: &InitArgs) -> Result<(), Failure> {
    let names = node_names(args)?;
    let mut addresses: std::collections::BTreeMap<&str, Vec<String>> = std::collections::BTreeMap::new();
    for a in &args.address {
        let (node, host) = a
            .split_once('=')
            .filter(|(n, h)| !n.is_empty() && !h.is_empty())
            .ok_or_else(|| {
                Failure::Input(format!(
                    "error: --address `{a}`: write NODE=HOST, e.g. planner=10.0.0.5"
                ))
            })?;
        if !names.iter().any(|n| n == node) {
            return Err(Failure::Input(format!(
                "error: --address `{a}`: no node `{node}` is made here (nodes: {})",
                names.join(", ")
            )));
        }
        addresses.entry(node).or_default().push(host.to_owned());
    }
    let dir = &args.dir;
    if ClusterCa::exists_in(dir) && !args.force {
        return Err(Failure::Input(format!(
            "error: {} already holds a cluster CA ({CA_CERT_FILE}, {CA_KEY_FILE}); a new one would lock out every \
             node with a certificate from it. Pass --force to replace it, or choose another --dir",
            dir.display()
        )));
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let ca = ClusterCa::generate(&args.name).map_err(|e| Failure::Input(format!("error: {e}")))?;
    let mut written = ca.write_to(dir).context("cannot write the cluster CA")?;
    for name in &names {
        let identity = ca
            .issue_with(name, addresses.get(name.as_str()).map_or(&[][..], Vec::as_slice))
            .map_err(|e| Failure::Input(format!("error: node `{name}`'s certificate: {e}")))?;
        written.extend(identity.write_to(dir).context("cannot write a node certificate")?);
    }
    let token_path = dir.join(TOKEN_FILE);
    Token::generate()
        .and_then(|t| t.write(&token_path))
        .map_err(|e| Failure::Other(anyhow!("cannot make the cluster's API token: {e}")))?;
    written.push(token_path);
    print_written(&ca, &names, dir, &written)
}

fn print_written(ca: &ClusterCa, names: &[String], dir: &Path, written: &[PathBuf]) -> Result<(), Failure> {
    outln!(
        "cluster `{}`: a CA and {} node certificate{} ({}) in {}",
        ca.name(),
        names.len(),
        if names.len() == 1 { "" } else { "s" },
        names.join(", "),
        dir.display()
    )?;
    for path in written {
        let secret = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with("-key.pem") || n == TOKEN_FILE);
        outln!(
            "  wrote {}{}",
            path.display(),
            if secret { "  (secret, mode 0600)" } else { "" }
        )?;
    }
    outln!(
        "Give each node its <name>.pem, <name>-key.pem and {CA_CERT_FILE}, and the planner, the workers and \
         the clients the {TOKEN_FILE} (--token-file); keep {CA_KEY_FILE} off the workers (it is needed only to \
         issue more certificates)."
    )
}

/// Creates the cluster CA in `dir` if missing, and the certificates of `names` that are missing.
pub(crate) fn ensure_certs(dir: &Path, names: &[String]) -> Result<(), Failure> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let ca = if ClusterCa::exists_in(dir) {
        ClusterCa::load(dir).map_err(|e| anyhow!("cannot load the cluster CA from {}: {e}", dir.display()))?
    } else {
        let ca = ClusterCa::generate("faasflow-local").map_err(|e| anyhow!("cannot create the cluster CA: {e}"))?;
        ca.write_to(dir).context("cannot write the cluster CA")?;
        ca
    };
    for name in names {
        let (cert, key) = NodeIdentity::file_names(name);
        if dir.join(&cert).is_file() && dir.join(&key).is_file() {
            continue;
        }
        // The planner of a local cluster is also reached as 127.0.0.1 and localhost (`curl`
        // checks the address it dialled).
        let addresses: Vec<String> = if name == PLANNER_NODE {
            vec!["127.0.0.1".into(), "::1".into(), "localhost".into()]
        } else {
            Vec::new()
        };
        let identity = ca
            .issue_with(name, &addresses)
            .with_context(|| format!("cannot issue node `{name}`'s certificate"))?;
        identity.write_to(dir).context("cannot write a node certificate")?;
    }
    Ok(())
}

/// How the CLI calls the planner of the local cluster whose certificates are in `certs`: TLS,
/// checked against its CA.
pub(crate) fn local_transport(certs: &Path) -> Result<Transport, Failure> {
    let trust =
        ClusterTrust::load(certs).map_err(|e| Failure::Other(anyhow!("cannot load the local cluster's CA: {e}")))?;
    let config = api_client_config(&trust, None, &[ALPN_H2]).map_err(|e| Failure::Other(anyhow!("{e}")))?;
    Ok(Transport::Tls(std::sync::Arc::new(config)))
}

/// The cluster's API token in `dir` (made when there is none).
pub(crate) fn ensure_token(dir: &Path) -> Result<Option<Token>, Failure> {
    let path = dir.join(TOKEN_FILE);
    if path.exists() {
        return Token::load(&path).map(Some).map_err(|e| Failure::Other(anyhow!("{e}")));
    }
    let token = Token::generate().map_err(|e| Failure::Other(anyhow!("cannot make the cluster's token: {e}")))?;
    token
        .write(&path)
        .map_err(|e| Failure::Other(anyhow!("cannot write the cluster's token: {e}")))?;
    Ok(Some(token))
}
