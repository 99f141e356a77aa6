//! `cargo xtask images`: the repo's packs as static executables, each in a `FROM scratch`
//! Docker image `faasflow/<pack>`, for functions that run in containers; and `faasflow/python`,
//! the interpreter with the faasflow package (`python_image.rs`).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{cargo, cargo_target_dir, run};

/// The packs `images` builds: (package, pack name). The image of pack `P` is `faasflow/P`,
/// the name the daemon uses for a container function of pack `P` that names no `image`
/// (`faasflow/synthetic` for functions without a pack).
const PACKS: [(&str, &str); 3] = [
    ("faasflow-pack-testkit", "testkit"),
    ("faasflow-pack-example", "example"),
    ("faasflow-pack-synthetic", "synthetic"),
];

/// The Docker engine's version, or why it cannot be reached.
pub(crate) fn docker_version() -> Result<String> {
    let out = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .context("cannot run `docker`: install Docker (Debian: apt-get install docker.io)")?;
    if !out.status.success() {
        bail!(
            "Docker is not reachable ({}): start dockerd, or point DOCKER_HOST at it",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Builds the packs of [`PACKS`] as statically linked executables (their own target dir:
/// other RUSTFLAGS) and each into a `FROM scratch` image that runs it as user 65534, labelled
/// with its functions (`faasflow.functions`, comma-separated) so that a daemon needs not run
/// the image to list them. Returns the image names.
pub(crate) fn images(root: &Path) -> Result<Vec<String>> {
    let version = docker_version()?;
    eprintln!("==> Docker {version}");
    let host = String::from_utf8(
        Command::new("rustc")
            .arg("-vV")
            .output()
            .context("cannot run rustc")?
            .stdout,
    )?
    .lines()
    .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
    .context("`rustc -vV` names no host")?;
    let target_dir = cargo_target_dir(root).join("images");
    let mut build = cargo();
    build
        .args(["build", "--release", "--locked", "--target", &host, "--target-dir"])
        .arg(&target_dir)
        // A static executable runs in an image with nothing else in it.
        .env("RUSTFLAGS", "-C target-feature=+crt-static");
    for (package, _) in PACKS {
        build.args(["-p", package]);
    }
    run("cargo build (static packs)", &mut build)?;
    let mut names = Vec::new();
    for (package, pack) in PACKS {
        let exe = target_dir.join(&host).join("release").join(package);
        let functions = list_functions(&exe)?;
        let context = target_dir.join("context").join(pack);
        std::fs::create_dir_all(&context)?;
        std::fs::copy(&exe, context.join("pack")).with_context(|| format!("cannot copy {}", exe.display()))?;
        std::fs::write(context.join("Dockerfile"), dockerfile(pack, &functions))?;
        let image = format!("faasflow/{pack}");
        run(
            &format!("docker build {image}"),
            Command::new("docker")
                .args(["build", "--quiet", "--tag", &image])
                .arg(&context)
                // The classic builder: Debian's docker.io comes without buildx.
                .env("DOCKER_BUILDKIT", "0"),
        )?;
        names.push(image);
    }
    names.push(crate::python_image::build(root)?);
    eprintln!("==> images: {}", names.join(", "));
    Ok(names)
}

/// The functions a pack executable serves (`PACK --list`, one a line).
fn list_functions(exe: &Path) -> Result<Vec<String>> {
    let listed = Command::new(exe)
        .arg("--list")
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    if !listed.status.success() {
        bail!(
            "`{} --list` failed: {}",
            exe.display(),
            String::from_utf8_lossy(&listed.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// The Dockerfile of pack `pack`'s image: the executable alone, run as user 65534.
fn dockerfile(pack: &str, functions: &[String]) -> String {
    format!(
        "FROM scratch\nCOPY pack /pack\n\
         LABEL faasflow.pack=\"{pack}\" faasflow.functions=\"{}\"\n\
         USER 65534:65534\nENTRYPOINT [\"/pack\"]\n",
        functions.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::dockerfile;

    #[test]
    fn the_dockerfile_labels_the_pack_and_its_functions() {
        assert_eq!(
            dockerfile("example", &["a".into(), "b".into()]),
            "FROM scratch\nCOPY pack /pack\nLABEL faasflow.pack=\"example\" faasflow.functions=\"a,b\"\n\
             USER 65534:65534\nENTRYPOINT [\"/pack\"]\n"
        );
    }
}
