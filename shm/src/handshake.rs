//! The handshake between a new instance and its daemon, over a Unix stream socket.
//!
//! The daemon creates a socket pair, starts the instance with one end inherited and its fd
//! number in [`INSTANCE_FD_ENV`], and waits for:
//! 1. instance → daemon: [`Hello`] (protocol version, pack name, process id, the pack's
//!    functions in the order [`crate::frame::Invoke::function`] indexes them);
//! 2. daemon → instance: [`Welcome`] with three memory files passed as `SCM_RIGHTS`: the arena
//!    segment of the instance's workflow (its objects, and no other workflow's), the
//!    instance's ring pair, and the daemon's doorbell;
//! 3. instance → daemon: one byte, [`READY`], once it has mapped all three (pre-faulting what
//!    [`Welcome::prefault`] says is resident) and attached to its rings: the daemon sends no
//!    call before ([`send_ready`], [`recv_ready`]).
//!
//! After that the socket carries nothing. It stays open: its end-of-file tells the instance
//! that the daemon is gone (and the daemon, that the instance is).
//!
//! Messages: `len u32 | body` with `body` = `kind u8 | fields` (little-endian; strings as
//! `len u16 | UTF-8`). Decoding is as strict as the frame decoder: typed errors, no panics,
//! bounded allocations.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Instant;

/// Environment variable holding the fd number of the instance's end of the socket.
pub const INSTANCE_FD_ENV: &str = "FAASFLOW_INSTANCE_FD";
/// Environment variable holding the path of the daemon's socket, for an instance that cannot
/// inherit an fd (one in a container, where the socket is bind-mounted): the instance connects
/// to it and the handshake goes on as with an inherited socket.
pub const INSTANCE_SOCKET_ENV: &str = "FAASFLOW_INSTANCE_SOCKET";
/// Protocol version; a daemon refuses an instance that speaks another one.
pub const PROTOCOL_VERSION: u32 = 4;
/// Largest handshake message, in bytes.
pub const MAX_MESSAGE: usize = 1 << 20;
/// Most functions a pack may announce.
pub const MAX_FUNCTIONS: usize = 4096;
const KIND_HELLO: u8 = 1;
const KIND_WELCOME: u8 = 2;
const MAX_FDS: usize = 4;

/// Instance → daemon: who is here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the instance.
    pub version: u32,
    /// The pack's name.
    pub pack: String,
    /// The instance's process id (as the instance sees it).
    pub pid: u32,
    /// The functions the pack serves, in index order.
    pub functions: Vec<String>,
}

/// Daemon → instance: where everything is. Sent with three fds: the memory file of the arena
/// segment of the instance's workflow, the memory file of the instance's rings, and the memory
/// file holding the daemon's doorbell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The instance's id, for its logs.
    pub instance: u32,
    /// Segment number of the arena in [`crate::frame::ObjectRef::segment`].
    pub segment: u32,
    /// Bytes at the start of the segment that are resident: the instance maps them eagerly
    /// (the rest of the segment is mapped as it is first touched).
    pub prefault: u64,
    /// Offset of the daemon's [`crate::Doorbell`] in the doorbell's file.
    pub doorbell: u64,
    /// Offset of the daemon → instance ring (invocations, grants) in the rings file.
    pub to_instance: u64,
    /// Offset of the instance → daemon ring (completions, allocations) in the rings file.
    pub to_daemon: u64,
    /// How many calls the instance may run at once (threads).
    pub threads: u32,
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The socket failed or closed early.
    #[error("handshake socket: {0}")]
    Io(#[from] io::Error),
    /// The peer sent something that is not the expected message.
    #[error("malformed handshake message: {0}")]
    Malformed(&'static str),
    /// The peer speaks another protocol version.
    #[error("instance speaks protocol version {got}, this daemon speaks {PROTOCOL_VERSION}")]
    Version {
        /// The instance's version.
        got: u32,
    },
    /// The welcome did not carry the three memory files.
    #[error("welcome carried {0} file descriptors, expected 3")]
    Fds(usize),
}

/// Starts `cmd` as an instance: creates the socket pair, lets the child inherit its end (fd
/// number in [`INSTANCE_FD_ENV`]), and asks the kernel to kill the child when the calling thread
/// exits (`PR_SET_PDEATHSIG`; call it from a thread that lives as long as the daemon), so that
/// instances never outlive their daemon. Returns
/// the child and the daemon's end of the socket.
pub fn spawn_instance(cmd: &mut std::process::Command) -> io::Result<(std::process::Child, UnixStream)> {
    use std::os::unix::process::CommandExt;
    let (daemon_end, instance_end) = UnixStream::pair()?;
    let fd = instance_end.as_raw_fd();
    cmd.env(INSTANCE_FD_ENV, fd.to_string());
    // SAFETY: the closure runs in the child between fork and exec and only makes two
    // async-signal-safe syscalls (fcntl, prctl) on values copied into it; it allocates nothing
    // and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    drop(instance_end);
    Ok((child, daemon_end))
}

/// Instance side: takes over inherited fd `fd` (the number in [`INSTANCE_FD_ENV`]), which
/// must be an open socket, and marks it close-on-exec (so that processes a function starts do
/// not keep the daemon's socket open).
pub fn inherited_socket(fd: std::os::fd::RawFd) -> io::Result<UnixStream> {
    // SAFETY: an all-zero `stat` is a valid value; fstat only writes into it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on any integer is safe (EBADF if it is not an fd); `st` is writable.
    if fd < 0 || unsafe { libc::fstat(fd, &mut st) } < 0 {
        return Err(io::Error::new(io::ErrorKind::NotFound, "not an open file descriptor"));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a socket"));
    }
    // SAFETY: F_SETFD on an open fd; takes an integer flag.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is an open socket (checked above) that the daemon handed to this process
    // for its instance runtime alone: nothing else in the process owns or closes it.
    Ok(unsafe { UnixStream::from_raw_fd(fd) })
}

/// A pidfd of process `pid` (Linux 5.3+): it becomes readable when the process exits, even
/// if something else still holds the process's sockets (a child it forked, say).
pub fn pidfd(pid: u32) -> io::Result<OwnedFd> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: pidfd_open takes a pid and flags (0) and returns a new fd or -1; no memory is
    // passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// Blocks until `a` or `b` is readable (or hung up); returns `(a_ready, b_ready)`.
pub fn wait_readable(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> io::Result<(bool, bool)> {
    wait_readable_for(a, b, None)
}

/// [`wait_readable`] for at most `timeout` (`(false, false)` when it passed).
pub fn wait_readable_for(
    a: BorrowedFd<'_>,
    b: BorrowedFd<'_>,
    timeout: Option<std::time::Duration>,
) -> io::Result<(bool, bool)> {
    let mut fds = [
        libc::pollfd {
            fd: a.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: b.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let ms = timeout.map_or(-1, |t| libc::c_int::try_from(t.as_millis()).unwrap_or(libc::c_int::MAX));
    loop {
        // SAFETY: `fds` is a valid array of 2 pollfd structures, alive and writable across the
        // call; both fds are open (borrowed).
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if n >= 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let ready = |p: &libc::pollfd| p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
    Ok((ready(&fds[0]), ready(&fds[1])))
}

/// Sends `SIGKILL` to the process of `pidfd` (which, unlike a pid, cannot have been reused).
pub fn pidfd_kill(pidfd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: pidfd_send_signal takes an fd (borrowed, open), a signal number, a null siginfo
    // pointer (allowed: the kernel fills in a default) and flags 0; no memory is written.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The byte an instance sends when it is ready for calls.
pub const READY: u8 = 0xA5;

/// Instance side: says it is ready for calls.
pub fn send_ready(sock: &mut UnixStream) -> Result<(), HandshakeError> {
    sock.write_all(&[READY])?;
    Ok(())
}

/// Daemon side: waits for the instance's [`READY`] (honouring the socket's read timeout).
pub fn recv_ready(sock: &mut UnixStream) -> Result<(), HandshakeError> {
    recv_ready_by(sock, None)
}

/// [`recv_ready`], giving up at `deadline` (whatever the socket's own read timeout).
pub fn recv_ready_by(sock: &mut UnixStream, deadline: Option<Instant>) -> Result<(), HandshakeError> {
    let mut b = [0u8; 1];
    read_exact_by(sock, &mut b, deadline)?;
    if b[0] != READY {
        return Err(HandshakeError::Malformed("expected the ready byte"));
    }
    Ok(())
}

impl Hello {
    /// Sends this hello.
    pub fn send(&self, sock: &mut UnixStream) -> Result<(), HandshakeError> {
        send_message(sock, &self.encode()?, &[])
    }

    /// Receives a hello (untrusted) and checks its version.
    pub fn recv(sock: &mut UnixStream) -> Result<Hello, HandshakeError> {
        Hello::recv_by(sock, None)
    }

    /// [`Hello::recv`], giving up at `deadline` however slowly the peer sends (a peer that
    /// sends one byte just before each read times out would otherwise hold the reader).
    pub fn recv_by(sock: &mut UnixStream, deadline: Option<Instant>) -> Result<Hello, HandshakeError> {
        let (body, fds) = recv_message(sock, deadline)?;
        if !fds.is_empty() {
            return Err(HandshakeError::Malformed("hello carries file descriptors"));
        }
        Hello::decode(&body)
    }

    /// Decodes the body of a hello message (untrusted bytes) and checks its version.
    pub fn decode(body: &[u8]) -> Result<Hello, HandshakeError> {
        let mut r = Cursor(body);
        if r.u8()? != KIND_HELLO {
            return Err(HandshakeError::Malformed("expected a hello"));
        }
        let version = r.u32()?;
        if version != PROTOCOL_VERSION {
            return Err(HandshakeError::Version { got: version });
        }
        let pack = r.str()?;
        let pid = r.u32()?;
        let n = r.u32()? as usize;
        if n > MAX_FUNCTIONS {
            return Err(HandshakeError::Malformed("too many functions"));
        }
        let functions = (0..n).map(|_| r.str()).collect::<Result<_, _>>()?;
        r.end()?;
        Ok(Hello {
            version,
            pack,
            pid,
            functions,
        })
    }

    /// The body of this hello's message (what [`Hello::decode`] reads).
    pub fn encode(&self) -> Result<Vec<u8>, HandshakeError> {
        if self.functions.len() > MAX_FUNCTIONS {
            return Err(HandshakeError::Malformed("too many functions"));
        }
        let mut b = vec![KIND_HELLO];
        b.extend_from_slice(&self.version.to_le_bytes());
        put_str(&mut b, &self.pack)?;
        b.extend_from_slice(&self.pid.to_le_bytes());
        b.extend_from_slice(&(self.functions.len() as u32).to_le_bytes());
        for f in &self.functions {
            put_str(&mut b, f)?;
        }
        Ok(b)
    }
}

impl Welcome {
    /// Sends this welcome with the memory files of the arena segment, the rings and the
    /// doorbell.
    pub fn send(&self, sock: &mut UnixStream, files: WelcomeFiles<BorrowedFd<'_>>) -> Result<(), HandshakeError> {
        let mut b = vec![KIND_WELCOME];
        for v in [self.instance, self.segment] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for v in [self.prefault, self.doorbell, self.to_instance, self.to_daemon] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&self.threads.to_le_bytes());
        send_message(sock, &b, &[files.arena, files.rings, files.bell])
    }

    /// Receives a welcome and its three memory files.
    pub fn recv(sock: &mut UnixStream) -> Result<(Welcome, WelcomeFiles<OwnedFd>), HandshakeError> {
        let (body, fds) = recv_message(sock, None)?;
        let mut r = Cursor(&body);
        if r.u8()? != KIND_WELCOME {
            return Err(HandshakeError::Malformed("expected a welcome"));
        }
        let w = Welcome {
            instance: r.u32()?,
            segment: r.u32()?,
            prefault: r.u64()?,
            doorbell: r.u64()?,
            to_instance: r.u64()?,
            to_daemon: r.u64()?,
            threads: r.u32()?,
        };
        r.end()?;
        let n = fds.len();
        let mut fds = fds.into_iter();
        match (fds.next(), fds.next(), fds.next(), n) {
            (Some(arena), Some(rings), Some(bell), 3) => Ok((w, WelcomeFiles { arena, rings, bell })),
            _ => Err(HandshakeError::Fds(n)),
        }
    }
}

/// The memory files a [`Welcome`] carries.
#[derive(Debug)]
pub struct WelcomeFiles<F> {
    /// The arena segment of the instance's workflow.
    pub arena: F,
    /// The instance's ring pair.
    pub rings: F,
    /// The daemon's doorbell (at [`Welcome::doorbell`]).
    pub bell: F,
}

fn put_str(b: &mut Vec<u8>, s: &str) -> Result<(), HandshakeError> {
    let len = u16::try_from(s.len()).map_err(|_| HandshakeError::Malformed("string longer than 65535 bytes"))?;
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(s.as_bytes());
    Ok(())
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], HandshakeError> {
        if self.0.len() < n {
            return Err(HandshakeError::Malformed("message truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, HandshakeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, HandshakeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, HandshakeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn str(&mut self) -> Result<String, HandshakeError> {
        let b = self.take(2)?;
        let n = usize::from(u16::from_le_bytes([b[0], b[1]]));
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| HandshakeError::Malformed("string is not UTF-8"))
    }
    fn end(&self) -> Result<(), HandshakeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(HandshakeError::Malformed("trailing bytes"))
        }
    }
}

/// Sends `len u32 | body`, with `fds` attached to the first byte.
fn send_message(sock: &mut UnixStream, body: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), HandshakeError> {
    if body.len() > MAX_MESSAGE {
        return Err(HandshakeError::Malformed("message too large"));
    }
    let mut msg = (body.len() as u32).to_le_bytes().to_vec();
    msg.extend_from_slice(body);
    let sent = send_fds(sock, &msg, fds)?;
    sock.write_all(&msg[sent..])?;
    Ok(())
}

/// Receives one `len u32 | body` message and the fds that came with it.
fn recv_message(sock: &mut UnixStream, deadline: Option<Instant>) -> Result<(Vec<u8>, Vec<OwnedFd>), HandshakeError> {
    let mut head = [0u8; 4];
    set_timeout_until(sock, deadline)?;
    let (n, fds) = recv_fds(sock, &mut head)?;
    if n == 0 {
        return Err(HandshakeError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "peer closed the socket before the handshake",
        )));
    }
    read_exact_by(sock, &mut head[n..], deadline)?;
    let len = u32::from_le_bytes(head) as usize;
    if len > MAX_MESSAGE {
        return Err(HandshakeError::Malformed("message too large"));
    }
    let mut body = vec![0u8; len];
    read_exact_by(sock, &mut body, deadline)?;
    Ok((body, fds))
}

/// Sets the socket's read timeout to what is left until `deadline` (nothing without one).
fn set_timeout_until(sock: &UnixStream, deadline: Option<Instant>) -> io::Result<()> {
    let Some(d) = deadline else { return Ok(()) };
    let left = d.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "the handshake took too long"));
    }
    sock.set_read_timeout(Some(left))
}

/// `read_exact`, with the time left until `deadline` as the timeout of each read.
fn read_exact_by(sock: &mut UnixStream, mut buf: &mut [u8], deadline: Option<Instant>) -> io::Result<()> {
    while !buf.is_empty() {
        set_timeout_until(sock, deadline)?;
        match sock.read(buf) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the socket",
                ));
            }
            Ok(n) => buf = &mut buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

const CMSG_SPACE: usize = 64;

/// `sendmsg` of `bytes` with `fds` as `SCM_RIGHTS`; returns the bytes sent.
fn send_fds(sock: &UnixStream, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    assert!(fds.len() <= MAX_FDS, "at most {MAX_FDS} fds per message");
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let mut cmsg = [0u64; CMSG_SPACE / 8];
    // SAFETY: an all-zero msghdr is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let data_len = std::mem::size_of_val(fds) as u32;
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe { libc::CMSG_SPACE(data_len) } as usize;
        debug_assert!(space <= CMSG_SPACE);
        msg.msg_control = cmsg.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: `msg_control` points at `cmsg`, 8-aligned and `space` bytes long (checked
        // above: 4 fds need 32 bytes), so CMSG_FIRSTHDR returns a valid header inside it and
        // CMSG_DATA points at room for `fds.len()` ints.
        unsafe {
            let h = libc::CMSG_FIRSTHDR(&msg);
            (*h).cmsg_level = libc::SOL_SOCKET;
            (*h).cmsg_type = libc::SCM_RIGHTS;
            (*h).cmsg_len = libc::CMSG_LEN(data_len) as usize;
            let data = libc::CMSG_DATA(h).cast::<libc::c_int>();
            for (i, fd) in fds.iter().enumerate() {
                data.add(i).write_unaligned(fd.as_raw_fd());
            }
        }
    }
    loop {
        // SAFETY: `msg` points at `iov` (which points at `bytes`) and at `cmsg`, all alive across
        // the call; sendmsg only reads them.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `recvmsg` into `buf`, taking any `SCM_RIGHTS` fds (close-on-exec); returns bytes read.
fn recv_fds(sock: &UnixStream, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cmsg = [0u64; CMSG_SPACE / 8];
    // SAFETY: an all-zero msghdr is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = CMSG_SPACE;
    let n = loop {
        // SAFETY: `msg` points at `iov` (which points at `buf`) and at `cmsg`, writable and alive
        // across the call, with their true lengths.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the kernel filled `msg_control`/`msg_controllen` with well-formed control messages
    // inside `cmsg`; CMSG_FIRSTHDR/CMSG_NXTHDR walk them within those bounds. The fds of an
    // SCM_RIGHTS message are new descriptors now owned by this process, each taken once.
    unsafe {
        let mut h = libc::CMSG_FIRSTHDR(&msg);
        while !h.is_null() {
            if (*h).cmsg_level == libc::SOL_SOCKET && (*h).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(h).cast::<libc::c_int>();
                let count = ((*h).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<libc::c_int>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            h = libc::CMSG_NXTHDR(&msg, h);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "file descriptors were truncated",
        ));
    }
    Ok((n, fds))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::sync::Arc;

    #[test]
    fn hello_and_welcome_cross_a_socket_with_their_memory_files() {
        let (mut a, mut b) = UnixStream::pair().expect("socketpair");
        let hello = Hello {
            version: PROTOCOL_VERSION,
            pack: "example".into(),
            pid: 42,
            functions: vec!["upper".into(), "count_words".into()],
        };
        hello.send(&mut a).expect("send hello");
        assert_eq!(Hello::recv(&mut b).expect("recv hello"), hello);

        let arena = Arc::new(crate::Region::create("hs-arena", 8192).expect("memfd"));
        let rings = crate::Region::create("hs-rings", 4096).expect("memfd");
        let bell = crate::Region::create("hs-bell", 4096).expect("memfd");
        // SAFETY: (test) offset 100 is inside the 8192-byte mapping; writing one byte through
        // a raw pointer, before any other process maps it.
        unsafe { arena.as_ptr().add(100).write(0xab) };
        let welcome = Welcome {
            instance: 3,
            segment: 0,
            prefault: 4096,
            doorbell: 64,
            to_instance: 0,
            to_daemon: 4096,
            threads: 8,
        };
        let files = WelcomeFiles {
            arena: arena.fd(),
            rings: rings.fd(),
            bell: bell.fd(),
        };
        welcome.send(&mut b, files).expect("send welcome");
        let (got, files) = Welcome::recv(&mut a).expect("recv welcome");
        assert_eq!(got, welcome);
        let mapped = crate::Region::open(files.arena).expect("map arena");
        assert_eq!(mapped.len(), 8192);
        // SAFETY: (test) offset 100 is inside the mapping; the writer above is done.
        assert_eq!(unsafe { mapped.as_ptr().add(100).read() }, 0xab, "the same pages");
        assert_eq!(crate::Region::open(files.rings).expect("map rings").len(), 4096);
        assert_eq!(crate::Region::open(files.bell).expect("map bell").len(), 4096);
        let _ = rings.fd().as_fd();
    }

    #[test]
    fn a_wrong_version_or_garbage_is_a_typed_error() {
        let (mut a, mut b) = UnixStream::pair().expect("socketpair");
        Hello {
            version: 1,
            pack: "old".into(),
            pid: 1,
            functions: vec![],
        }
        .send(&mut a)
        .expect("send");
        assert!(matches!(Hello::recv(&mut b), Err(HandshakeError::Version { got: 1 })));
        send_message(&mut a, &[KIND_HELLO, 2, 0], &[]).expect("send");
        assert!(matches!(Hello::recv(&mut b), Err(HandshakeError::Malformed(_))));
        a.write_all(&u32::MAX.to_le_bytes()).expect("write");
        assert!(matches!(
            Hello::recv(&mut b),
            Err(HandshakeError::Malformed("message too large"))
        ));
        drop(a);
        assert!(matches!(Hello::recv(&mut b), Err(HandshakeError::Io(_))));
    }

    #[test]
    fn a_peer_dripping_bytes_cannot_hold_the_reader_past_its_deadline() {
        let (mut a, mut b) = UnixStream::pair().expect("socketpair");
        let dripper = std::thread::spawn(move || {
            // A 100-byte message, one byte every 20 ms (each well within any per-read timeout).
            let mut msg = 100u32.to_le_bytes().to_vec();
            msg.extend_from_slice(&[KIND_HELLO; 100]);
            for byte in msg {
                if a.write_all(&[byte]).is_err() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        });
        b.set_read_timeout(Some(std::time::Duration::from_secs(1)))
            .expect("timeout");
        let start = Instant::now();
        let got = Hello::recv_by(&mut b, Some(start + std::time::Duration::from_millis(200)));
        assert!(
            matches!(&got, Err(HandshakeError::Io(e)) if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock),
            "{got:?}"
        );
        assert!(start.elapsed() < std::time::Duration::from_millis(600));
        drop(b);
        dripper.join().expect("dripper");
    }

    #[test]
    fn a_welcome_without_its_files_is_refused() {
        let (mut a, mut b) = UnixStream::pair().expect("socketpair");
        let mut body = vec![KIND_WELCOME];
        body.extend_from_slice(&[0; 4 + 4 + 8 * 4 + 4]);
        send_message(&mut b, &body, &[]).expect("send");
        assert!(matches!(Welcome::recv(&mut a), Err(HandshakeError::Fds(0))));
    }
}
