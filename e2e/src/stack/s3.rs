//! An S3 server that checks SigV4 signatures: `s3s-fs` (crates.io, built by
//! `scripts/lib.sh`), serving a temp directory with one access key. Tenants that need their
//! own credentials get their own server, as they would their own MinIO.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use super::process::{Service, Workdir};
use super::{START_TIMEOUT, StackError};

const HINT: &str =
    "scripts/test builds it into .tools/bin (cargo install s3s-fs --features binary)";

/// A running S3 server.
pub struct S3Server {
    service: Service,
    address: SocketAddr,
    access_key: String,
    secret_key: String,
    // Last, so the server stops before its directory goes.
    dir: Workdir,
}

impl S3Server {
    /// Starts a server on loopback accepting only `access_key` / `secret_key`; blocks until
    /// it listens.
    pub fn start(access_key: &str, secret_key: &str) -> Result<Self, StackError> {
        Self::start_on(
            std::net::IpAddr::from([127, 0, 0, 1]),
            access_key,
            secret_key,
        )
    }

    /// [`Self::start`] listening on `host` (a node's `HOST_IP`, for Pods).
    pub fn start_on(
        host: std::net::IpAddr,
        access_key: &str,
        secret_key: &str,
    ) -> Result<Self, StackError> {
        let program = super::tool("s3s-fs", "S3S_FS", HINT)?;
        let dir = Workdir::new("s3")?;
        let root = dir.path().join("data");
        std::fs::create_dir_all(&root).map_err(|e| StackError::Io {
            what: format!("creating {}", root.display()),
            source: e,
        })?;
        let mut command = Command::new(&program);
        command
            .args(["--host", &host.to_string(), "--port", "0"])
            .args(["--access-key", access_key, "--secret-key", secret_key])
            .arg(&root)
            // It logs its address at info level; port 0 means no race for a free port.
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        let mut service = Service::start("s3", &dir, command)?;
        let log = service.log_file().to_path_buf();
        let mut address = None;
        service.wait_until(START_TIMEOUT, || {
            address = listening_address(&std::fs::read_to_string(&log).unwrap_or_default());
            address.is_some()
        })?;
        let address = address.ok_or_else(|| StackError::NotReady {
            service: "s3".into(),
            after: START_TIMEOUT,
            log: service.log_tail(),
        })?;
        Ok(Self {
            service,
            address,
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            dir,
        })
    }

    /// The endpoint URL (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The access key it accepts.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The secret key it accepts.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The directory holding the buckets (one subdirectory each) and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the server is still running.
    pub fn is_running(&mut self) -> bool {
        self.service.is_running()
    }

    /// An aws-sdk-s3 client for this server with the given keys (path-style addressing).
    pub fn client_with(&self, access_key: &str, secret_key: &str) -> aws_sdk_s3::Client {
        let credentials = aws_credential_types::Credentials::from_keys(
            access_key.to_owned(),
            secret_key.to_owned(),
            None,
        );
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(credentials)
            .force_path_style(true)
            .http_client(http)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// An aws-sdk-s3 client with the keys this server accepts.
    pub fn client(&self) -> aws_sdk_s3::Client {
        self.client_with(&self.access_key, &self.secret_key)
    }
}

/// The address in s3s-fs's "server is running at http://ADDR" log line.
fn listening_address(log: &str) -> Option<SocketAddr> {
    let at = log.find("server is running at http://")? + "server is running at http://".len();
    let rest = &log[at..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"')
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_address_in_the_log() {
        let log = "  2026-11-24T09:00:00Z  INFO s3s_fs: server is running at http://127.0.0.1:40123\n    at src/main.rs:126\n";
        assert_eq!(
            listening_address(log),
            Some("127.0.0.1:40123".parse().unwrap())
        );
        assert_eq!(listening_address("starting"), None);
    }
}
