//! The memory probe measures what a real process touches, through BPF and through /proc.
//! The measured process is this test binary run again as `touch_memory_child`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use faasflow_ebpf::{Probe, ProbeMode};

const MIB: u64 = 1 << 20;
const TOUCH: u64 = 64 * MIB;

/// Run by the tests as a child: on `go`, touches TOUCH bytes, says `done`, and holds them
/// until its stdin closes. A no-op when run as a test of its own.
#[test]
fn touch_memory_child() {
    if std::env::var_os("FAASFLOW_PROBE_CHILD").is_none() {
        return;
    }
    let mut line = String::new();
    let stdin = std::io::stdin();
    stdin.lock().read_line(&mut line).unwrap();
    let mut buf = vec![0u8; TOUCH as usize];
    for i in (0..buf.len()).step_by(4096) {
        buf[i] = 1;
    }
    std::hint::black_box(&buf);
    println!("faasflow-probe-child: touched");
    std::io::stdout().flush().unwrap();
    line.clear();
    let _ = stdin.lock().read_line(&mut line);
    drop(buf);
}

struct Toucher {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Toucher {
    fn start() -> Toucher {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "touch_memory_child", "--nocapture", "--test-threads", "1"])
            .env("FAASFLOW_PROBE_CHILD", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Toucher { child, stdin, stdout }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn touch(&mut self) {
        writeln!(self.stdin.as_mut().unwrap(), "go").unwrap();
        let mut line = String::new();
        while !line.contains("faasflow-probe-child: touched") {
            line.clear();
            assert!(self.stdout.read_line(&mut line).unwrap() > 0, "the child ended early");
        }
    }
}

impl Drop for Toucher {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.wait();
    }
}

fn measures_what_a_process_touched(mode: ProbeMode) {
    let (mut probe, why) = Probe::new(mode).unwrap();
    assert!(why.is_none(), "{why:?}");
    let mut child = Toucher::start();
    probe.track(child.pid()).unwrap();
    let before = probe.peak(child.pid()).unwrap();
    assert!(before < TOUCH / 2, "{} before touching: {before}", probe.kind());
    child.touch();
    let peak = probe.peak(child.pid()).unwrap();
    println!(
        "{}: peak {} MiB before, {} MiB after touching 64 MiB",
        probe.kind(),
        before / MIB,
        peak / MIB
    );
    // At least what was touched, and not far beyond (the test binary itself is a few MiB).
    assert!(peak >= TOUCH, "{}: peak {peak} < {TOUCH}", probe.kind());
    assert!(
        peak < TOUCH + 48 * MIB,
        "{}: peak {peak} far above {TOUCH}",
        probe.kind()
    );
    // A reset starts a new measurement from what the process holds now (the 64 MiB).
    probe.reset(child.pid()).unwrap();
    let again = probe.peak(child.pid()).unwrap();
    assert!(
        again >= TOUCH && again <= peak + MIB,
        "{}: after reset {again}",
        probe.kind()
    );
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    match (mode, faasflow_ebpf::cgroup_id(child.pid())) {
        (ProbeMode::Ebpf, Some(cg)) => {
            let cg_peak = probe.cgroup_peak(cg).expect("the child's cgroup is measured");
            assert!(cg_peak >= TOUCH, "cgroup peak {cg_peak}");
        }
        (_, id) => assert_eq!(id.is_some(), v2, "a cgroup id exactly on a cgroup v2 host"),
    }
    probe.forget(child.pid());
}

#[test]
fn the_bpf_probe_measures_what_a_process_touched() {
    measures_what_a_process_touched(ProbeMode::Ebpf);
}

#[test]
fn the_proc_probe_measures_what_a_process_touched() {
    measures_what_a_process_touched(ProbeMode::Proc);
}

#[test]
fn a_process_that_is_not_there_is_a_clear_error() {
    for mode in [ProbeMode::Proc, ProbeMode::Ebpf] {
        let (mut probe, _) = Probe::new(mode).unwrap();
        // Pids above pid_max do not exist.
        let err = probe.track(u32::MAX - 1).unwrap_err().to_string();
        assert!(err.starts_with(&format!("process {}", u32::MAX - 1)), "{err}");
        assert!(probe.peak(u32::MAX - 1).is_err());
    }
    assert!(
        "sometimes"
            .parse::<ProbeMode>()
            .unwrap_err()
            .to_string()
            .contains("auto, ebpf or proc")
    );
}
