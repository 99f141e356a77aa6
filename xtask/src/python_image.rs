//! The image `faasflow/python`, for functions in Python with `isolation: container`: the
//! interpreter of `target/python/venv` (the one `cargo xtask python` installs the package for),
//! its standard library, the faasflow package and numpy, and the shared libraries they load, in
//! a `FROM scratch` image. No registry and no distribution image: everything comes from this
//! machine. The interpreter lives in `/opt/python` (`PYTHONHOME`), runs as user 65534 on a
//! read-only root (no bytecode written), and its entrypoint is `python -m faasflow.serve`; the
//! daemon gives the functions to serve as arguments and mounts their code directories.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{cargo_target_dir, run};

/// The image's name (the daemon's default for a container function in Python).
pub(crate) const IMAGE: &str = "faasflow/python";
/// Where the interpreter is in the image.
const HOME: &str = "/opt/python";
/// Parts of the standard library a function server does not need.
const SKIPPED: &[&str] = &[
    "site-packages",
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "lib2to3",
    "ensurepip",
    "pydoc_data",
];
/// What the image takes from the environment's site-packages.
const PACKAGES: &[&str] = &["faasflow", "numpy", "numpy.libs"];

/// Builds [`IMAGE`] from the environment of `cargo xtask python` (made first).
pub(crate) fn build(root: &Path) -> Result<String> {
    let python = crate::python::python(root)?;
    let facts = Command::new(&python)
        .args([
            "-c",
            "import sys, sysconfig; print(sys.base_prefix); print('%d.%d' % sys.version_info[:2]); \
             print(sysconfig.get_paths()['purelib'])",
        ])
        .output()
        .context("cannot run the environment's interpreter")?;
    let facts = String::from_utf8_lossy(&facts.stdout).to_string();
    let mut lines = facts.lines();
    let (Some(base), Some(version), Some(site)) = (lines.next(), lines.next(), lines.next()) else {
        bail!("{} did not say where it is", python.display());
    };
    let (base, site) = (PathBuf::from(base), PathBuf::from(site));
    let context = cargo_target_dir(root).join("images/context/python");
    let _ = std::fs::remove_dir_all(&context);
    let rootfs = context.join("rootfs");
    let home = rootfs.join(HOME.trim_start_matches('/'));
    let exe = base.join(format!("bin/python{version}"));
    copy(&exe, &home.join(format!("bin/python{version}")))?;
    let stdlib = base.join(format!("lib/python{version}"));
    copy_tree(&stdlib, &home.join(format!("lib/python{version}")), SKIPPED)?;
    for entry in std::fs::read_dir(base.join("lib")).context("the interpreter's lib directory")? {
        let p = entry?.path();
        if p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("libpython"))
        {
            copy(&p, &home.join("lib").join(p.file_name().unwrap_or_default()))?;
        }
    }
    let image_site = home.join(format!("lib/python{version}/site-packages"));
    for entry in std::fs::read_dir(&site).with_context(|| format!("cannot read {}", site.display()))? {
        let p = entry?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let wanted = PACKAGES
            .iter()
            .any(|k| name == *k || (name.starts_with(&format!("{k}-")) && name.ends_with(".dist-info")));
        if wanted {
            copy_tree(&p, &image_site.join(&name), &[])?;
        }
    }
    // The shared libraries the interpreter and every extension module load.
    let mut objects = vec![exe.clone()];
    collect_objects(&home, &mut objects)?;
    let mut libs = BTreeSet::new();
    for o in &objects {
        libs.extend(shared_libraries(o)?);
    }
    for lib in &libs {
        if lib.starts_with(&base) {
            continue; // libpython: copied above, under HOME
        }
        copy(lib, &rootfs.join(lib.strip_prefix("/").unwrap_or(lib)))?;
    }
    std::fs::write(context.join("Dockerfile"), dockerfile(version))?;
    run(
        &format!("docker build {IMAGE}"),
        Command::new("docker")
            .args(["build", "--quiet", "--tag", IMAGE])
            .arg(&context)
            .env("DOCKER_BUILDKIT", "0"),
    )?;
    Ok(IMAGE.to_owned())
}

fn dockerfile(version: &str) -> String {
    format!(
        "FROM scratch\nCOPY rootfs /\n\
         ENV PYTHONHOME={HOME} LD_LIBRARY_PATH={HOME}/lib PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1\n\
         LABEL faasflow.pack=\"python\"\n\
         USER 65534:65534\nENTRYPOINT [\"{HOME}/bin/python{version}\", \"-m\", \"faasflow.serve\"]\n"
    )
}

/// Copies file `from` (following links) to `to`, making its directory (mode 755).
fn copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::copy(from, to).with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// Copies the tree `from` to `to`, leaving out the entries of the top directory named in `skip`.
fn copy_tree(from: &Path, to: &Path, skip: &[&str]) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        let p = entry.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(&name), &[])?;
        } else if p.is_file() {
            copy(&p, &to.join(&name))?;
        }
    }
    Ok(())
}

/// The extension modules and libraries under `dir`.
fn collect_objects(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.is_dir() {
            collect_objects(&p, out)?;
        } else if p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".so") || n.contains(".so."))
        {
            out.push(p);
        }
    }
    Ok(())
}

/// The shared libraries `object` loads, as `ldd` resolves them here (the loader included).
fn shared_libraries(object: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(object).output().context("cannot run ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            let path = match l.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_runs_the_server_as_nobody_from_opt_python() {
        let d = dockerfile("3.11");
        assert!(d.starts_with("FROM scratch\nCOPY rootfs /\n"), "{d}");
        assert!(
            d.contains("PYTHONHOME=/opt/python") && d.contains("PYTHONDONTWRITEBYTECODE=1"),
            "{d}"
        );
        assert!(d.contains("USER 65534:65534"), "{d}");
        assert!(
            d.ends_with("ENTRYPOINT [\"/opt/python/bin/python3.11\", \"-m\", \"faasflow.serve\"]\n"),
            "{d}"
        );
    }
}
