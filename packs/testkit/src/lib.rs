//! A faasflow pack for end-to-end and fault tests: functions that copy, join, make and
//! measure data, and functions that fail in every way a function can (an error, a panic, an
//! exit, a hang).
#![forbid(unsafe_code)]

use faasflow_sdk::{Context, Error, Pack};
use serde::Deserialize;

/// The pack's name.
pub const NAME: &str = "testkit";

/// The pack with all its functions.
pub fn pack() -> Pack {
    Pack::new(NAME)
        .function("echo", echo)
        .function("concat", concat)
        .function("noop", noop)
        .function("fail", fail)
        .function("panic", panic)
        .function("exit", exit)
        .function("hang", hang)
        .function("emit", emit)
        .function("json", json)
        .function("len", len)
        .function("touch", touch)
        .function("sandbox", sandbox)
        .function("snoop", snoop)
        .function("say", say)
        .function("fnv", fnv)
}

/// `echo`: copies input `in` to output `out`.
pub fn echo(ctx: &mut Context<'_>) -> Result<(), Error> {
    let input = ctx.input("in")?;
    ctx.output("out", input)
}

/// `concat`: output `out` is every input, in input-name order, each list flattened in element
/// order and absent inputs skipped.
pub fn concat(ctx: &mut Context<'_>) -> Result<(), Error> {
    let mut names: Vec<&str> = ctx.input_names().collect();
    names.sort_unstable();
    let mut parts = Vec::new();
    for name in names {
        parts.extend(ctx.inputs(name)?);
    }
    let len = parts.iter().map(|p| p.len()).sum();
    ctx.output_with("out", len, |buf| {
        let mut at = 0;
        for part in parts {
            buf[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
    })
}

/// `noop`: reads no input and writes no output.
pub fn noop(_ctx: &mut Context<'_>) -> Result<(), Error> {
    Ok(())
}

/// `fail`: fails with `testkit: asked to fail`.
pub fn fail(_ctx: &mut Context<'_>) -> Result<(), Error> {
    Err("testkit: asked to fail".into())
}

/// `panic`: panics with `testkit: asked to panic`.
pub fn panic(_ctx: &mut Context<'_>) -> Result<(), Error> {
    panic!("testkit: asked to panic")
}

/// `say`: writes two lines to its stderr, `testkit says: TEXT` (input `in` as text, or
/// `hello` without one) and `testkit said it`.
pub fn say(ctx: &mut Context<'_>) -> Result<(), Error> {
    let text = match ctx.input("in") {
        Ok(b) => String::from_utf8_lossy(b).into_owned(),
        Err(_) => "hello".to_owned(),
    };
    eprintln!("testkit says: {text}\ntestkit said it");
    Ok(())
}

/// `exit`: ends the instance's process at once with status 3 (no completion is sent).
pub fn exit(_ctx: &mut Context<'_>) -> Result<(), Error> {
    std::process::exit(3)
}

/// `hang`: sleeps forever (for timeouts).
pub fn hang(_ctx: &mut Context<'_>) -> Result<(), Error> {
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// Parameters of [`emit`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmitParams {
    bytes: usize,
}

/// `emit`: output `out` of N bytes written in place, byte `i` being `i % 251`; N is input
/// `bytes` (a JSON number) when the call has it, else the parameters `{"bytes": N}`.
pub fn emit(ctx: &mut Context<'_>) -> Result<(), Error> {
    let bytes = match ctx.input_opt("bytes") {
        Ok(Some(_)) => ctx.input_json::<usize>("bytes")?,
        _ => ctx.params_json::<EmitParams>()?.bytes,
    };
    ctx.output_with("out", bytes, |buf| {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
    })
}

/// `json`: the parameters, which must be JSON, become output `out` unchanged.
pub fn json(ctx: &mut Context<'_>) -> Result<(), Error> {
    let params = ctx.params();
    serde_json::from_slice::<serde::de::IgnoredAny>(params)
        .map_err(|e| Error::new(format_args!("the parameters of `json` are not JSON: {e}")))?;
    ctx.output("out", params)
}

/// `touch`: allocates input `mib` (a JSON number) MiB, writes one byte of every page, frees
/// them, and outputs the number: memory a probe must see the function use.
pub fn touch(ctx: &mut Context<'_>) -> Result<(), Error> {
    let mib = ctx.input_json::<usize>("mib")?;
    let mut pages = vec![0u8; mib << 20];
    for i in (0..pages.len()).step_by(4096) {
        pages[i] = 1;
    }
    std::hint::black_box(&pages);
    drop(pages);
    ctx.output_json("out", &mib)
}

/// `sandbox`: what the instance can see and do, as JSON output `out`: `uid` (its real user id,
/// from /proc), `pid` (its process id as it sees it: 1 in a container of its own),
/// `root_writable` (whether it could create a file in `/`), and `interfaces` (the network
/// interfaces it has, from /proc/net/dev: only `lo` without a network).
pub fn sandbox(ctx: &mut Context<'_>) -> Result<(), Error> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| Error::new(format_args!("cannot read /proc/self/status: {e}")))?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or("no Uid in /proc/self/status")?;
    let probe = std::path::Path::new("/.faasflow-testkit-probe");
    let root_writable = std::fs::write(probe, b"x").is_ok();
    if root_writable {
        let _ = std::fs::remove_file(probe);
    }
    let interfaces: Vec<String> = std::fs::read_to_string("/proc/net/dev")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim().to_owned()))
        .collect();
    ctx.output_json(
        "out",
        &serde_json::json!({
            "uid": uid,
            "pid": std::process::id(),
            "root_writable": root_writable,
            "interfaces": interfaces,
        }),
    )
}

/// `snoop`: looks for a secret where an instance might find other workflows' data. Input
/// `in` is the secret reversed (so that the input itself, in this instance's arena, does not
/// match). Output `out` (JSON): `memfds`, the shared-memory files this process holds or maps
/// (from /proc/self/fd and /proc/self/maps), and `found`, whether the secret is anywhere in the
/// memory of those it maps (read through /proc/self/mem).
pub fn snoop(ctx: &mut Context<'_>) -> Result<(), Error> {
    let secret: Vec<u8> = ctx.input("in")?.iter().rev().copied().collect();
    if secret.is_empty() {
        return Err("input `in` is empty".into());
    }
    let mut memfds = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir("/proc/self/fd").map_err(|e| Error::new(format_args!("/proc/self/fd: {e}")))? {
        let Ok(entry) = entry else { continue };
        if let Ok(target) = std::fs::read_link(entry.path()) {
            let target = target.to_string_lossy().into_owned();
            if let Some(name) = target.strip_prefix("/memfd:") {
                memfds.insert(name.trim_end_matches(" (deleted)").to_owned());
            }
        }
    }
    let maps =
        std::fs::read_to_string("/proc/self/maps").map_err(|e| Error::new(format_args!("/proc/self/maps: {e}")))?;
    let mut mem = std::fs::File::open("/proc/self/mem").map_err(|e| Error::new(format_args!("/proc/self/mem: {e}")))?;
    let mut found = false;
    for line in maps.lines() {
        let Some((_, name)) = line.split_once("/memfd:") else {
            continue;
        };
        memfds.insert(name.trim_end_matches(" (deleted)").to_owned());
        let range = line.split_whitespace().next().unwrap_or_default();
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16)) else {
            continue;
        };
        found |= contains(&mut mem, start, end, &secret);
    }
    ctx.output_json("out", &serde_json::json!({ "memfds": memfds, "found": found }))
}

/// Whether bytes `start..end` of `mem` (a process's memory) hold `needle`.
fn contains(mem: &mut std::fs::File, start: u64, end: u64, needle: &[u8]) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let chunk = 1 << 20;
    let mut buf = vec![0u8; chunk + needle.len()];
    let mut at = start;
    while at < end {
        let n = ((end - at) as usize).min(chunk + needle.len());
        if mem.seek(SeekFrom::Start(at)).is_err() || mem.read_exact(&mut buf[..n]).is_err() {
            return false;
        }
        if buf[..n].windows(needle.len()).any(|w| w == needle) {
            return true;
        }
        at += chunk as u64;
    }
    false
}

/// `len`: output `out` is the number of bytes of input `in`, as a JSON number.
pub fn len(ctx: &mut Context<'_>) -> Result<(), Error> {
    let n = ctx.input("in")?.len();
    ctx.output_json("out", &n)
}

/// `fnv`: output `out` is the 64-bit FNV-1a hash of input `in`'s bytes, as a JSON string of
/// 16 hex digits ([`fnv1a`]): a test checks that a function read exactly the bytes it gave.
pub fn fnv(ctx: &mut Context<'_>) -> Result<(), Error> {
    let h = fnv1a(ctx.input("in")?);
    ctx.output_json("out", &format!("{h:016x}"))
}

/// The 64-bit FNV-1a hash of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use faasflow_sdk::testing::TestCall;

    #[test]
    fn data_functions() -> Result<(), Error> {
        let pack = pack();
        let out = TestCall::new("fnv").input("in", "a").run_in(&pack)?;
        // FNV-1a 64 of "a", as published.
        assert_eq!(out.output("out"), Some(&b"\"af63dc4c8601ec8c\""[..]));
        let out = TestCall::new("echo").input("in", "abc").run_in(&pack)?;
        assert_eq!(out.output("out"), Some(&b"abc"[..]));
        let out = TestCall::new("concat")
            .input("b", "2")
            .input_list("a", ["0", "1"])
            .input_absent("c")
            .input("d", "3")
            .run_in(&pack)?;
        assert_eq!(out.output("out"), Some(&b"0123"[..]));
        let out = TestCall::new("emit").params(r#"{"bytes": 600}"#).run_in(&pack)?;
        let bytes = out.output("out").unwrap_or_default();
        assert_eq!(bytes.len(), 600);
        assert_eq!((bytes[250], bytes[251], bytes[599]), (250, 0, (599 % 251) as u8));
        let out = TestCall::new("json").params(r#"{"k": [1, 2]}"#).run_in(&pack)?;
        assert_eq!(out.output("out"), Some(&br#"{"k": [1, 2]}"#[..]));
        assert!(TestCall::new("json").params("{").run_in(&pack).is_err());
        let out = TestCall::new("len").input("in", [0u8; 1234]).run_in(&pack)?;
        assert_eq!(out.output("out"), Some(&b"1234"[..]));
        let out = TestCall::new("noop").input("ignored", "x").run_in(&pack)?;
        assert_eq!(out.outputs().count(), 0);
        Ok(())
    }

    #[test]
    fn failing_functions() {
        let pack = pack();
        let err = TestCall::new("fail").run_in(&pack).unwrap_err();
        assert_eq!(err.message(), "testkit: asked to fail");
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| TestCall::new("panic").run_in(&pack)))
            .unwrap_err();
        assert_eq!(panicked.downcast_ref::<&str>(), Some(&"testkit: asked to panic"));
    }
}
