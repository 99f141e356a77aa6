//! A pack's program: its command line (`--list`, `--help`), the socket the daemon hands it,
//! and its exit status. This is the `main` of every pack (a pack's own `main.rs` only calls
//! [`serve`]), so it is where a pack's process prints: `--list` and `--help` on stdout, and
//! the one line that says why it exits on stderr (which the daemon logs).

use std::os::fd::RawFd;
use std::os::unix::net::UnixStream;
use std::process::exit;

use faasflow_shm::handshake::{INSTANCE_FD_ENV, INSTANCE_SOCKET_ENV};

use crate::Pack;
use crate::runtime::serve_on;

/// Runs `pack` as an instance of the faasflow daemon; this is the whole `main` of a pack:
/// ```no_run
/// // fn main() {
/// let pack = faasflow_sdk::Pack::new("example").function("noop", |_ctx| Ok(()));
/// faasflow_sdk::serve(pack)
/// // }
/// ```
///
/// The daemon starts the pack with its end of a Unix socket inherited and the fd number in
/// `FAASFLOW_INSTANCE_FD` (in a container: with the path of a bind-mounted socket in
/// `FAASFLOW_INSTANCE_SOCKET`, which it connects to); `serve` takes that socket over, sets the process to be killed when the
/// daemon dies, and serves calls until the daemon closes the socket (exit status 0). It exits
/// with status 1 when the daemon breaks the protocol, and 2 when it was not started by a
/// daemon (run by hand, it says so). `PACK --list` prints the functions, one per line.
pub fn serve(pack: Pack) -> ! {
    serve_with_args(pack, std::env::args_os().skip(1))
}

/// [`serve`] for a program that hosts a pack behind a subcommand: `args` are the arguments
/// after the subcommand (`--list`, or none).
///
/// ```no_run
/// // `tool __pack hello [--list]` serves the pack; other subcommands do other things.
/// let mut args = std::env::args_os().skip(1);
/// if args.next().is_some_and(|a| a == "__pack") && args.next().is_some_and(|a| a == "hello") {
///     let pack = faasflow_sdk::Pack::new("hello").function("noop", |_ctx| Ok(()));
///     faasflow_sdk::serve_with_args(pack, args);
/// }
/// ```
pub fn serve_with_args(pack: Pack, args: impl IntoIterator<Item = std::ffi::OsString>) -> ! {
    let mut args = args.into_iter();
    match (args.next(), args.next()) {
        (None, _) => {}
        (Some(a), None) if a == "--list" => {
            for name in pack.function_names() {
                println!("{name}");
            }
            exit(0);
        }
        (Some(a), None) if a == "--help" || a == "-h" => {
            println!("{}", not_by_hand(&pack));
            println!(
                "usage: {} [--list]   (--list prints the functions, one per line)",
                program()
            );
            exit(0);
        }
        _ => {
            eprintln!("{}", not_by_hand(&pack));
            eprintln!("usage: {} [--list]", program());
            exit(2);
        }
    }
    // SAFETY: prctl(PR_SET_PDEATHSIG, signal) takes two integers and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let sock = match daemon_socket() {
        Ok(sock) => sock,
        Err(why) => {
            match why {
                None => eprintln!(
                    "{} (neither {INSTANCE_FD_ENV} nor {INSTANCE_SOCKET_ENV} is set; `--list` prints the functions)",
                    not_by_hand(&pack)
                ),
                Some(why) => eprintln!("{}: {why}", pack.name()),
            }
            exit(2);
        }
    };
    if let Err(e) = crate::log::capture_stderr() {
        crate::log::line(None, &format!("{}: stderr is not tagged with calls: {e}", pack.name()));
    }
    let name = pack.name().to_owned();
    match serve_on(pack, sock) {
        Ok(()) => exit(0),
        Err(e) => {
            crate::log::line(None, &format!("{name}: {e}"));
            exit(1);
        }
    }
}

/// The instance's socket to its daemon: an inherited fd ([`INSTANCE_FD_ENV`]), or, in a
/// container, the bind-mounted socket at [`INSTANCE_SOCKET_ENV`]. `Err(None)`: neither is set.
fn daemon_socket() -> Result<UnixStream, Option<String>> {
    if let Some(path) = std::env::var_os(INSTANCE_SOCKET_ENV) {
        return UnixStream::connect(&path).map_err(|e| {
            Some(format!(
                "cannot connect to the daemon's socket {INSTANCE_SOCKET_ENV}={path:?}: {e}"
            ))
        });
    }
    let fd = std::env::var_os(INSTANCE_FD_ENV).ok_or(None)?;
    match fd.to_str().and_then(|s| s.parse::<RawFd>().ok()) {
        Some(n) => {
            faasflow_shm::handshake::inherited_socket(n).map_err(|e| Some(format!("{INSTANCE_FD_ENV}={fd:?}: {e}")))
        }
        None => Err(Some(format!(
            "{INSTANCE_FD_ENV}={fd:?} is not a file descriptor number"
        ))),
    }
}

fn program() -> String {
    std::env::args().next().unwrap_or_else(|| "pack".into())
}

fn not_by_hand(pack: &Pack) -> String {
    format!(
        "`{}` is a faasflow function pack (functions: {}); the faasflow daemon starts it, it is not run by hand",
        pack.name(),
        pack.function_names().collect::<Vec<_>>().join(", ")
    )
}
