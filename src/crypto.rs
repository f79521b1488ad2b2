//! Envelope encryption of credentials at rest (the Postgres mirror): AES-256-GCM with a random
//! 96-bit nonce per value, and associated data that binds each envelope to its key id, tenant
//! and field path, so a ciphertext copied to another row or field fails to decrypt.
//!
//! Keys come from a [`Keyring`] (in production a Kubernetes Secret mounted as files): several
//! keys by id, one of them active. Every new envelope uses the active key; any key of the ring
//! opens the envelopes that name it, which is what lets keys rotate.
//!
//! The envelope, as JSON (field order irrelevant):
//!
//! ```json
//! {"enc": "aes-256-gcm.v1", "kid": "2026-11", "nonce": "<base64, 12 bytes>", "ct": "<base64, ciphertext || 16-byte tag>"}
//! ```
//!
//! and its associated data is the compact JSON array
//! `["aes-256-gcm.v1", <kid>, <tenant id>, [<path segment>, …]]` encoded as UTF-8. Python's
//! `json.dumps(aad, separators=(",", ":"), ensure_ascii=False).encode()` gives the same bytes
//! (see `docs/database.md` and `docs/mirror/decrypt_mirror.py`).
//!
//! Nothing here logs, and no error carries plaintext or key material.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::config::Credential;

/// The `enc` value of every envelope this version writes and reads.
pub const ENVELOPE_FORMAT: &str = "aes-256-gcm.v1";

/// The Secret key (or file) naming the active key id; every other key is a key.
pub const ACTIVE_KEY_ENTRY: &str = "active";

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// An encrypted value as stored in the mirror's JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Algorithm and format version, always [`ENVELOPE_FORMAT`].
    pub enc: String,
    /// Id of the key that sealed this value.
    pub kid: String,
    /// Base64 (standard, padded) of the 12-byte nonce.
    pub nonce: String,
    /// Base64 (standard, padded) of the ciphertext followed by the 16-byte tag.
    pub ct: String,
}

/// Why a keyring could not be loaded or an envelope could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The key source holds no keys.
    #[error(
        "the keyring has no keys: add at least one 32-byte key (raw or base64) and an `{ACTIVE_KEY_ENTRY}` entry naming it"
    )]
    NoKeys,
    /// The `active` entry is missing.
    #[error(
        "the keyring has no `{ACTIVE_KEY_ENTRY}` entry: set it to the id of the key new envelopes use (one of: {known})"
    )]
    NoActiveKey {
        /// The key ids present.
        known: String,
    },
    /// The `active` entry names a key that is not there.
    #[error(
        "`{ACTIVE_KEY_ENTRY}` names key id `{kid}`, which is not in the keyring (present: {known})"
    )]
    ActiveKeyMissing {
        /// The id named by `active`.
        kid: String,
        /// The key ids present.
        known: String,
    },
    /// A key id is not a valid id.
    #[error("key id `{kid}`: expected 1-64 characters from A-Z a-z 0-9 . _ -")]
    BadKeyId {
        /// The offending id.
        kid: String,
    },
    /// A key is not 32 bytes.
    #[error(
        "key `{kid}`: expected 32 raw bytes or their standard base64 (44 characters), got {len} bytes that are neither"
    )]
    BadKey {
        /// The key's id.
        kid: String,
        /// Length of the value found.
        len: usize,
    },
    /// A key file could not be read.
    #[error("reading keys from {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An envelope names a key the keyring does not have.
    #[error(
        "{field}: sealed with key id `{kid}`, which is not in the keyring: add it back until `tenant-mcp keys rotate` has re-encrypted every row"
    )]
    UnknownKeyId {
        /// Where the envelope sits (tenant and path).
        field: String,
        /// The id named by the envelope.
        kid: String,
    },
    /// An envelope is malformed.
    #[error("{field}: malformed envelope: {problem}")]
    Malformed {
        /// Where the envelope sits (tenant and path).
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// Authentication failed.
    #[error(
        "{field}: decryption failed: the ciphertext, nonce or key id was altered, or the envelope was copied from another tenant or field"
    )]
    Tampered {
        /// Where the envelope sits (tenant and path).
        field: String,
    },
}

impl CryptoError {
    /// A PascalCase reason for conditions, events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoKeys
            | Self::NoActiveKey { .. }
            | Self::ActiveKeyMissing { .. }
            | Self::BadKeyId { .. }
            | Self::BadKey { .. }
            | Self::Io { .. } => "KeyringInvalid",
            Self::UnknownKeyId { .. } => "UnknownKeyId",
            Self::Malformed { .. } => "MalformedEnvelope",
            Self::Tampered { .. } => "DecryptionFailed",
        }
    }
}

/// One key: the AEAD cipher, a MAC key derived from it for content hashes, and its check
/// value.
struct DataKey {
    cipher: Aes256Gcm,
    mac_key: Zeroizing<[u8; 32]>,
    check: String,
}

/// The keys envelopes are sealed and opened with: several by id, one active.
pub struct Keyring {
    keys: BTreeMap<String, DataKey>,
    active: String,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .field("active", &self.active)
            .finish()
    }
}

impl Keyring {
    /// Builds a keyring from `(name, value)` entries, as a Secret's `data` holds them: the entry
    /// [`ACTIVE_KEY_ENTRY`] names the active key id; every other entry is a key, 32 raw bytes or
    /// their standard base64 (surrounding whitespace ignored).
    pub fn from_entries<I, K, V>(entries: I) -> Result<Self, CryptoError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<[u8]>,
    {
        let mut keys = BTreeMap::new();
        let mut active = None;
        for (name, value) in entries {
            let name = name.as_ref();
            let value = value.as_ref();
            if name == ACTIVE_KEY_ENTRY {
                active = Some(String::from_utf8_lossy(value).trim().to_owned());
                continue;
            }
            check_key_id(name)?;
            keys.insert(name.to_owned(), DataKey::new(name, value)?);
        }
        if keys.is_empty() {
            return Err(CryptoError::NoKeys);
        }
        let known = keys.keys().cloned().collect::<Vec<_>>().join(", ");
        let active = active.ok_or_else(|| CryptoError::NoActiveKey {
            known: known.clone(),
        })?;
        if !keys.contains_key(&active) {
            return Err(CryptoError::ActiveKeyMissing { kid: active, known });
        }
        Ok(Self { keys, active })
    }

    /// Loads a keyring from a directory with one file per entry, as Kubernetes mounts a Secret
    /// volume. Hidden entries (the `..data` links of a mounted Secret) are skipped.
    pub fn from_dir(dir: &Path) -> Result<Self, CryptoError> {
        let io = |path: &Path, source| CryptoError::Io {
            path: path.to_owned(),
            source,
        };
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let entry = entry.map_err(|e| io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with('.') || path.is_dir() {
                continue;
            }
            let value = Zeroizing::new(std::fs::read(&path).map_err(|e| io(&path, e))?);
            entries.push((name, value));
        }
        Self::from_entries(entries)
    }

    /// The id new envelopes are sealed with.
    pub fn active_id(&self) -> &str {
        &self.active
    }

    /// Whether `other` has the same active key id and the same key material under every id
    /// (compared by check value: a keys Secret regenerated under the same ids differs).
    pub fn same_keys(&self, other: &Keyring) -> bool {
        self.active == other.active && self.check_values().eq(other.check_values())
    }

    /// Every key id with its check value, `hmac-sha256:<32 hex>`: an HMAC of a constant under
    /// the key, which tells whether two keys are the same without revealing either.
    pub fn check_values(&self) -> impl Iterator<Item = (&str, &str)> {
        self.keys
            .iter()
            .map(|(kid, k)| (kid.as_str(), k.check.as_str()))
    }

    /// Every key id, in order.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Seals `secret` for the field at `path` of `tenant`'s document, under the active key.
    pub fn seal(&self, secret: &Credential, tenant: &str, path: &[&str]) -> Envelope {
        let key = self.active_key();
        let nonce = Nonce::generate();
        let aad = associated_data(&self.active, tenant, path);
        let payload = Payload {
            msg: secret.expose().as_bytes(),
            aad: &aad,
        };
        // AES-GCM encryption of an in-memory buffer only fails beyond 64 GiB.
        let ct = key.cipher.encrypt(&nonce, payload).unwrap_or_default();
        Envelope {
            enc: ENVELOPE_FORMAT.to_owned(),
            kid: self.active.clone(),
            nonce: BASE64.encode(nonce),
            ct: BASE64.encode(ct),
        }
    }

    /// Opens an envelope found at `path` of `tenant`'s document.
    pub fn open(
        &self,
        envelope: &Envelope,
        tenant: &str,
        path: &[&str],
    ) -> Result<Credential, CryptoError> {
        let field = || format!("tenant {tenant:?} {}", path.join("."));
        let malformed = |problem: String| CryptoError::Malformed {
            field: field(),
            problem,
        };
        if envelope.enc != ENVELOPE_FORMAT {
            return Err(malformed(format!(
                "enc is {:?}, expected {ENVELOPE_FORMAT:?}",
                envelope.enc
            )));
        }
        let key = self
            .keys
            .get(&envelope.kid)
            .ok_or_else(|| CryptoError::UnknownKeyId {
                field: field(),
                kid: envelope.kid.clone(),
            })?;
        let nonce = BASE64
            .decode(&envelope.nonce)
            .map_err(|e| malformed(format!("nonce is not base64: {e}")))?;
        let nonce = Nonce::try_from(nonce.as_slice()).map_err(|_| {
            malformed(format!(
                "nonce is {} bytes, expected {NONCE_LEN}",
                nonce.len()
            ))
        })?;
        let ct = BASE64
            .decode(&envelope.ct)
            .map_err(|e| malformed(format!("ct is not base64: {e}")))?;
        if ct.len() < TAG_LEN {
            return Err(malformed(format!(
                "ct is {} bytes, shorter than the {TAG_LEN}-byte tag",
                ct.len()
            )));
        }
        let aad = associated_data(&envelope.kid, tenant, path);
        let plain = key
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &ct,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Tampered { field: field() })?;
        let plain = Zeroizing::new(plain);
        let text = std::str::from_utf8(&plain)
            .map_err(|_| malformed("plaintext is not UTF-8".to_owned()))?;
        Ok(Credential::new(text))
    }

    /// A keyed hash of `content` under the active key, `hmac-sha256:<kid>:<hex>`: tells
    /// whether a document changed without letting a database reader test guesses of the
    /// credentials inside it.
    pub fn content_mac(&self, content: &[u8]) -> String {
        self.content_mac_with(&self.active, content)
            .unwrap_or_else(|| unreachable!("the active key is in the keyring"))
    }

    /// [`Self::content_mac`] under key `kid` (`None` when the keyring lacks it): checks a hash
    /// made when another key was active.
    pub fn content_mac_with(&self, kid: &str, content: &[u8]) -> Option<String> {
        let key = self.keys.get(kid)?;
        // HMAC accepts keys of any length.
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key.mac_key.as_slice())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(content);
        Some(format!(
            "hmac-sha256:{kid}:{}",
            hex::encode(mac.finalize().into_bytes())
        ))
    }

    fn active_key(&self) -> &DataKey {
        // `from_entries` guarantees the active key is present.
        &self.keys[&self.active]
    }
}

/// A new random 32-byte key, standard base64, for a keyring entry.
pub fn generate_key() -> String {
    let key = Zeroizing::new(<[u8; KEY_LEN]>::generate());
    BASE64.encode(key.as_slice())
}

impl DataKey {
    fn new(kid: &str, value: &[u8]) -> Result<Self, CryptoError> {
        let raw: Zeroizing<Vec<u8>> = if value.len() == KEY_LEN {
            Zeroizing::new(value.to_vec())
        } else {
            let text = std::str::from_utf8(value).unwrap_or_default().trim();
            Zeroizing::new(BASE64.decode(text).unwrap_or_default())
        };
        if raw.len() != KEY_LEN {
            return Err(CryptoError::BadKey {
                kid: kid.to_owned(),
                len: value.len(),
            });
        }
        let cipher = Aes256Gcm::new_from_slice(&raw).map_err(|_| CryptoError::BadKey {
            kid: kid.to_owned(),
            len: value.len(),
        })?;
        // A separate key for content hashes, so the AES key is never used for two purposes.
        let mut derive = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&raw)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        derive.update(b"tenant-mcp content hash v1");
        let mut mac_key = Zeroizing::new([0u8; 32]);
        mac_key.copy_from_slice(&derive.finalize().into_bytes());
        // A check value tells two keys apart without revealing either (HMAC of a constant).
        let mut check = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&raw)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        check.update(b"tenant-mcp key check v1");
        let check = format!(
            "hmac-sha256:{}",
            hex::encode(&check.finalize().into_bytes()[..16])
        );
        Ok(Self {
            cipher,
            mac_key,
            check,
        })
    }
}

fn check_key_id(kid: &str) -> Result<(), CryptoError> {
    let ok = (1..=64).contains(&kid.len())
        && kid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CryptoError::BadKeyId {
            kid: kid.to_owned(),
        })
    }
}

fn associated_data(kid: &str, tenant: &str, path: &[&str]) -> Vec<u8> {
    // A JSON array is unambiguous whatever the ids and path segments contain.
    serde_json::to_vec(&(ENVELOPE_FORMAT, kid, tenant, path)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_compared_by_material_not_by_id() {
        let a = ring("k1");
        assert!(a.same_keys(&ring("k1")));
        assert!(!a.same_keys(&ring("k2")), "another active key");
        let regenerated = Keyring::from_entries([
            ("k1", generate_key().as_bytes().to_vec()),
            ("k2", K2.to_vec()),
            ("active", b"k1".to_vec()),
        ])
        .unwrap();
        assert!(!a.same_keys(&regenerated), "same ids, other material");
        let checks: Vec<_> = a.check_values().collect();
        assert_eq!(checks.len(), 2);
        assert!(checks[0].1.starts_with("hmac-sha256:") && checks[0].1.len() == 44);
        // A check value is no part of the key.
        assert!(
            !checks
                .iter()
                .any(|(_, c)| c.contains(&hex::encode([7u8; 4])))
        );
    }

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: [u8; 32] = [7; 32];

    fn ring(active: &str) -> Keyring {
        Keyring::from_entries([
            ("k1", K1.as_bytes()),
            ("k2", &K2[..]),
            ("active", active.as_bytes()),
        ])
        .unwrap()
    }

    const PATH: &[&str] = &["servers", "postgres", "credentials", "password"];

    #[test]
    fn round_trip() {
        let ring = ring("k1");
        let env = ring.seal(&Credential::new("hunter2"), "acme", PATH);
        assert_eq!(env.kid, "k1");
        assert_eq!(env.enc, ENVELOPE_FORMAT);
        assert!(!env.ct.contains("hunter2"));
        assert_eq!(ring.open(&env, "acme", PATH).unwrap().expose(), "hunter2");
        // A fresh nonce every time: equal plaintexts do not give equal ciphertexts.
        let again = ring.seal(&Credential::new("hunter2"), "acme", PATH);
        assert_ne!(env.nonce, again.nonce);
        assert_ne!(env.ct, again.ct);
    }

    #[test]
    fn moved_or_altered_envelopes_do_not_open() {
        let ring = ring("k1");
        let env = ring.seal(&Credential::new("hunter2"), "acme", PATH);
        let tampered = |e: Result<Credential, CryptoError>| match e {
            Err(CryptoError::Tampered { field }) => field,
            other => panic!("expected Tampered, got {other:?}"),
        };
        // Another tenant's row.
        let field = tampered(ring.open(&env, "globex", PATH));
        assert!(field.contains("globex"), "{field}");
        // Another field of the same row.
        tampered(ring.open(
            &env,
            "acme",
            &["servers", "minio", "credentials", "secretAccessKey"],
        ));
        // A flipped ciphertext bit.
        let mut ct = BASE64.decode(&env.ct).unwrap();
        ct[0] ^= 1;
        let bad_ct = Envelope {
            ct: BASE64.encode(&ct),
            ..env.clone()
        };
        tampered(ring.open(&bad_ct, "acme", PATH));
        // Another nonce.
        let bad_nonce = Envelope {
            nonce: BASE64.encode([0u8; 12]),
            ..env.clone()
        };
        tampered(ring.open(&bad_nonce, "acme", PATH));
        // Another key id that exists: wrong key and wrong associated data.
        let other_kid = Envelope {
            kid: "k2".into(),
            ..env.clone()
        };
        tampered(ring.open(&other_kid, "acme", PATH));
        // A key id that does not exist.
        let unknown = Envelope {
            kid: "k9".into(),
            ..env.clone()
        };
        assert!(matches!(
            ring.open(&unknown, "acme", PATH),
            Err(CryptoError::UnknownKeyId { kid, .. }) if kid == "k9"
        ));
        // Malformed parts name what is wrong.
        let short_nonce = Envelope {
            nonce: BASE64.encode([0u8; 8]),
            ..env.clone()
        };
        let err = ring.open(&short_nonce, "acme", PATH).unwrap_err();
        assert!(
            err.to_string().contains("nonce is 8 bytes, expected 12"),
            "{err}"
        );
        let other_format = Envelope {
            enc: "aes-128-cbc".into(),
            ..env
        };
        let err = ring.open(&other_format, "acme", PATH).unwrap_err();
        assert!(
            err.to_string().contains("expected \"aes-256-gcm.v1\""),
            "{err}"
        );
    }

    #[test]
    fn errors_never_carry_plaintext() {
        let ring = ring("k1");
        let env = ring.seal(&Credential::new("hunter2"), "acme", PATH);
        let err = ring.open(&env, "globex", PATH).unwrap_err();
        assert!(!format!("{err} {err:?} {ring:?}").contains("hunter2"));
        assert!(!format!("{ring:?}").contains(K1));
    }

    #[test]
    fn rotation_opens_old_envelopes_and_seals_new_ones_under_the_active_key() {
        let old = ring("k1").seal(&Credential::new("s3cret"), "acme", PATH);
        let rotated = ring("k2");
        assert_eq!(rotated.open(&old, "acme", PATH).unwrap().expose(), "s3cret");
        assert_eq!(
            rotated.seal(&Credential::new("s3cret"), "acme", PATH).kid,
            "k2"
        );
    }

    #[test]
    fn content_mac_is_keyed_and_names_the_key() {
        let a = ring("k1").content_mac(b"doc");
        assert!(a.starts_with("hmac-sha256:k1:"), "{a}");
        assert_eq!(a, ring("k1").content_mac(b"doc"));
        assert_ne!(a, ring("k1").content_mac(b"doc2"));
        assert_ne!(
            a.rsplit(':').next(),
            ring("k2").content_mac(b"doc").rsplit(':').next()
        );
    }

    #[test]
    fn keyring_errors_name_the_problem() {
        let err =
            |entries: Vec<(&str, &[u8])>| Keyring::from_entries(entries).unwrap_err().to_string();
        assert!(err(vec![]).contains("no keys"));
        assert!(err(vec![("k1", K1.as_bytes())]).contains("no `active` entry"));
        assert!(
            err(vec![("k1", K1.as_bytes()), ("active", b"k7")])
                .contains("names key id `k7`, which is not in the keyring (present: k1)")
        );
        assert!(
            err(vec![("k1", b"short"), ("active", b"k1")])
                .contains("key `k1`: expected 32 raw bytes")
        );
        assert!(
            err(vec![("bad/id", K1.as_bytes()), ("active", b"bad/id")]).contains("key id `bad/id`")
        );
        // Base64 with a trailing newline, as `openssl rand -base64 32 > file` writes it.
        let ring =
            Keyring::from_entries([("k1", format!("{K1}\n").as_bytes()), ("active", b"k1\n")])
                .unwrap();
        assert_eq!(ring.active_id(), "k1");
    }

    #[test]
    fn generated_keys_load() {
        let key = generate_key();
        assert_eq!(key.len(), 44);
        assert_ne!(key, generate_key());
        Keyring::from_entries([("g", key.as_bytes()), ("active", b"g")]).unwrap();
    }

    #[test]
    fn keyring_loads_a_mounted_secret_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k1"), K1).unwrap();
        std::fs::write(dir.path().join("active"), "k1").unwrap();
        std::fs::create_dir(dir.path().join("..2026_11_24")).unwrap();
        let ring = Keyring::from_dir(dir.path()).unwrap();
        assert_eq!(ring.key_ids().collect::<Vec<_>>(), ["k1"]);
        let missing = Keyring::from_dir(&dir.path().join("nope")).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }
}
