//! Container images of tenant-mcp and the sample app, made on this machine without a registry.
//!
//! The Dockerfile's base images cannot be pulled here, so the image is assembled from what the
//! Dockerfile's final stage holds: the binary at [`ImageLayout::binary`], the shared libraries
//! it links (glibc and libgcc, what the distroless `cc` base carries), CA certificates, and the
//! non-root user 65532 as the entrypoint's user. `../shared/kube/oci-pack` packs that root
//! filesystem as an OCI archive that a node's containerd imports (`ctr images import`).
//! `tests/image.rs` checks that the Dockerfile and [`TENANT_MCP`] agree.
//!
//! Archives are cached under the build directory, named by the binary's size and modification
//! time, so a suite's tests pack each binary once.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::stack::{StackError, repo_root};

/// What an image holds and how it starts.
#[derive(Clone, Copy, Debug)]
pub struct ImageLayout {
    /// The repository part of the image's name (`tenant-mcp`).
    pub repository: &'static str,
    /// Where the binary is in the image; it is also the whole entrypoint.
    pub binary: &'static str,
    /// The `UID:GID` the entrypoint runs as.
    pub user: &'static str,
}

/// The tenant-mcp image (the Dockerfile's).
pub const TENANT_MCP: ImageLayout = ImageLayout {
    repository: "tenant-mcp",
    binary: "/usr/local/bin/tenant-mcp",
    user: "65532:65532",
};

/// The sample app's image (`examples/sample-app/deploy.yaml`).
pub const SAMPLE_APP: ImageLayout = ImageLayout {
    repository: "tenant-mcp-sample-app",
    binary: "/usr/local/bin/tenant-mcp-sample-app",
    user: "65532:65532",
};

/// The CA bundle the image carries, where Debian and distroless keep it.
pub const CA_CERTIFICATES: &str = "/etc/ssl/certs/ca-certificates.crt";

/// An image archive made by [`pack`].
#[derive(Clone, Debug)]
pub struct PackedImage {
    /// The repository, as a chart's `image.repository` names it.
    pub repository: String,
    /// The tag (`dev-` and a digest of the binary's size and modification time).
    pub tag: String,
    /// The OCI archive.
    pub archive: PathBuf,
}

impl PackedImage {
    /// The name the kubelet resolves `repository:tag` to, under which containerd stores it.
    pub fn reference(&self) -> String {
        format!("docker.io/library/{}:{}", self.repository, self.tag)
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StackError {
    let what = what.into();
    move |source| StackError::Io { what, source }
}

fn setup_error(step: &str, output: &std::process::Output) -> StackError {
    StackError::Setup {
        service: "image".into(),
        step: step.into(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// Packs `binary` as the image `layout` into `out_dir` (made if missing), or returns the
/// archive packed before for the same binary.
pub fn pack(binary: &Path, layout: ImageLayout, out_dir: &Path) -> Result<PackedImage, StackError> {
    let meta = std::fs::metadata(binary).map_err(io(format!("reading {}", binary.display())))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let tag = format!(
        "dev-{:012x}",
        fnv1a(format!("{}:{modified}:{layout:?}", meta.len()).as_bytes()) & 0xffff_ffff_ffff
    );
    let image = PackedImage {
        repository: layout.repository.to_owned(),
        archive: out_dir.join(format!("{}-{tag}.tar", layout.repository)),
        tag,
    };
    if image.archive.is_file() {
        return Ok(image);
    }
    std::fs::create_dir_all(out_dir).map_err(io(format!("creating {}", out_dir.display())))?;
    let root = tempfile::Builder::new()
        .prefix("tenant-mcp-image-")
        .tempdir_in(out_dir)
        .map_err(io("creating the image's root directory"))?;
    assemble_root(binary, layout, root.path())?;
    // Packed beside the archive and renamed: another test process packing the same binary at
    // the same time never sees half an archive.
    let partial = root.path().with_extension("tar");
    let output = Command::new(oci_pack()?)
        .arg(image.reference())
        .arg(root.path())
        .arg(&partial)
        .args(["--entrypoint", &format!("[\"{}\"]", layout.binary)])
        .args(["--user", layout.user])
        .output()
        .map_err(io("running oci-pack"))?;
    if !output.status.success() {
        return Err(setup_error("oci-pack", &output));
    }
    std::fs::rename(&partial, &image.archive).map_err(io(format!(
        "moving the archive to {}",
        image.archive.display()
    )))?;
    Ok(image)
}

/// Packs the workspace's build of `layout`'s binary (the one beside the running test or
/// binary; `TENANT_MCP_BIN` for tenant-mcp) into `<target>/images`.
pub fn pack_built(layout: ImageLayout) -> Result<PackedImage, StackError> {
    let name = layout.binary.rsplit('/').next().unwrap_or(layout.binary);
    let binary = if name == "tenant-mcp" {
        crate::stack::tenant_mcp_binary()?
    } else {
        crate::stack::workspace_binary(name)?
    };
    // target/<profile>/<binary> → target/images
    let images = binary
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("images"), |target| target.join("images"));
    pack(&binary, layout, &images)
}

/// `../shared/kube/oci-pack` beside the checkout.
fn oci_pack() -> Result<PathBuf, StackError> {
    let path = repo_root().join("../shared/kube/oci-pack");
    if path.is_file() {
        Ok(path)
    } else {
        Err(StackError::Missing {
            program: "oci-pack".into(),
            hint: "check out ../shared beside this repository".into(),
        })
    }
}

/// The image's root filesystem: the binary (without its debug sections, when `objcopy` is
/// there), its shared libraries at the paths the loader looks for them, CA certificates, and
/// `/etc/passwd` and `/etc/group` naming the non-root user.
fn assemble_root(binary: &Path, layout: ImageLayout, root: &Path) -> Result<(), StackError> {
    let inside = |path: &str| root.join(path.trim_start_matches('/'));
    let target = inside(layout.binary);
    make_parent(&target)?;
    let stripped = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(binary)
        .arg(&target)
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(binary, &target).map_err(io(format!("copying {}", binary.display())))?;
    }
    for library in shared_libraries(binary)? {
        let to = inside(&library.to_string_lossy());
        make_parent(&to)?;
        // fs::copy follows the symlink: the image holds the file under the name it is linked by.
        std::fs::copy(&library, &to).map_err(io(format!("copying {}", library.display())))?;
    }
    let certificates = inside(CA_CERTIFICATES);
    make_parent(&certificates)?;
    std::fs::copy(CA_CERTIFICATES, &certificates).map_err(io(format!(
        "copying {CA_CERTIFICATES} (Debian's ca-certificates package)"
    )))?;
    let (uid, gid) = layout
        .user
        .split_once(':')
        .unwrap_or((layout.user, layout.user));
    let etc = inside("/etc");
    std::fs::write(
        etc.join("passwd"),
        format!(
            "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{uid}:{gid}:nonroot:/home/nonroot:/sbin/nologin\n"
        ),
    )
    .map_err(io("writing /etc/passwd"))?;
    std::fs::write(etc.join("group"), format!("root:x:0:\nnonroot:x:{gid}:\n"))
        .map_err(io("writing /etc/group"))?;
    for dir in ["/home/nonroot", "/tmp"] {
        std::fs::create_dir_all(inside(dir)).map_err(io(format!("creating {dir}")))?;
    }
    Ok(())
}

fn make_parent(path: &Path) -> Result<(), StackError> {
    match path.parent() {
        Some(parent) => {
            std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))
        }
        None => Ok(()),
    }
}

/// The shared libraries `binary` loads, the dynamic loader included, as `ldd` resolves them.
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, StackError> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(io("running ldd"))?;
    if !output.status.success() {
        return Err(setup_error("ldd", &output));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let libraries = text
        .lines()
        .filter_map(|line| {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
            let path = line.split_once("=> ").map_or(line, |(_, path)| path).trim();
            let path = path.split(" (").next()?.trim();
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect();
    Ok(libraries)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
