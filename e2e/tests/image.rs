//! The image packed here ([`tenant_mcp_e2e::image`], what the Pod tests and the demo run) and
//! the Dockerfile (what users with a registry build) agree on what matters: the binary's path,
//! the entrypoint, the user, and the files the binary needs at run time (its shared libraries,
//! which the Dockerfile's distroless `cc` base carries, and the CA bundle).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use tenant_mcp_e2e::image::{
    CA_CERTIFICATES, PackedImage, TENANT_MCP, pack_built, shared_libraries,
};
use tenant_mcp_e2e::stack::{repo_root, tenant_mcp_binary};

/// The Dockerfile's final stage: the `COPY` destination of the binary, `USER` and `ENTRYPOINT`.
fn final_stage() -> (String, String, Vec<String>) {
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let stage = dockerfile.rsplit("\nFROM ").next().unwrap();
    // What follows `prefix` on the stage's line that starts with it.
    let after = |prefix: &str| {
        stage
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("the final stage has no `{prefix}` line"))
            .trim()
            .to_owned()
    };
    let copied = after("COPY --from=build /tenant-mcp ");
    let user = after("USER ");
    let entrypoint = after("ENTRYPOINT ");
    (copied, user, serde_json::from_str(&entrypoint).unwrap())
}

/// `tar -xOf archive member`.
fn member(archive: &Path, name: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg(name)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The image's config, and its one layer unpacked from the archive (still gzipped).
struct Unpacked {
    config: Value,
    layer: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn unpack(image: &PackedImage) -> Unpacked {
    let blob = |digest: &str| format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    let index: Value = serde_json::from_slice(&member(&image.archive, "index.json")).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: Value =
        serde_json::from_slice(&member(&image.archive, &blob(manifest_digest))).unwrap();
    let config: Value = serde_json::from_slice(&member(
        &image.archive,
        &blob(manifest["config"]["digest"].as_str().unwrap()),
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let layer = dir.path().join("layer.tar.gz");
    let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap();
    std::fs::write(&layer, member(&image.archive, &blob(layer_digest))).unwrap();
    Unpacked {
        config,
        layer,
        _dir: dir,
    }
}

impl Unpacked {
    /// Every path in the layer, absolute.
    fn paths(&self) -> BTreeSet<String> {
        let out = Command::new("tar")
            .arg("-tzf")
            .arg(&self.layer)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|p| format!("/{}", p.trim_start_matches("./").trim_end_matches('/')))
            .collect()
    }

    /// A file of the layer.
    fn file(&self, name: &str) -> String {
        let out = Command::new("tar")
            .arg("-xzOf")
            .arg(&self.layer)
            .arg(name)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

#[test]
fn the_packed_image_and_the_dockerfile_agree() {
    let (copied, user, entrypoint) = final_stage();
    assert_eq!(copied, TENANT_MCP.binary, "the binary's path");
    assert_eq!(user, TENANT_MCP.user, "the user");
    assert_eq!(
        entrypoint,
        vec![TENANT_MCP.binary.to_owned()],
        "the entrypoint"
    );

    let image = pack_built(TENANT_MCP).unwrap();
    let unpacked = unpack(&image);
    let config = &unpacked.config;
    let paths = unpacked.paths();
    assert_eq!(config["config"]["User"], TENANT_MCP.user);
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!([TENANT_MCP.binary])
    );
    assert_eq!(config["architecture"], "amd64");
    let mut needed: Vec<String> = shared_libraries(&tenant_mcp_binary().unwrap())
        .unwrap()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        needed.iter().any(|l| l.contains("libc.so")),
        "ldd found no libc: {needed:?}"
    );
    needed.extend([
        TENANT_MCP.binary.to_owned(),
        CA_CERTIFICATES.to_owned(),
        "/etc/passwd".to_owned(),
        "/tmp".to_owned(),
    ]);
    for path in &needed {
        assert!(
            paths.contains(path),
            "{path} is not in the image: {paths:?}"
        );
    }
    let passwd = unpacked.file("etc/passwd");
    let uid = TENANT_MCP.user.split(':').next().unwrap();
    assert!(
        passwd.lines().any(|l| l.split(':').nth(2) == Some(uid)),
        "no user {uid} in /etc/passwd: {passwd}"
    );
}
