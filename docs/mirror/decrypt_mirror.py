#!/usr/bin/env python3
"""Decrypt a tenant-mcp mirror document (a tenant_configs.mcp_server_config value).

The reference for services that read the mirror outside Rust; CI runs it against rows that
tenant-mcp wrote, so the format stays interoperable. Needs the `cryptography` package.

    decrypt_mirror.py --keys-dir /etc/tenant-mcp/keys --tenant acme < document.json

prints the document with every envelope replaced by its plaintext. Exits 1 (with the field's
path on stderr) when an envelope does not open: altered, or copied from another row or field.
"""
import argparse
import base64
import json
import os
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

DOCUMENT_FORMAT = "tenant-mcp.mirror.v1"
ENVELOPE_FORMAT = "aes-256-gcm.v1"


def load_keys(keys_dir):
    """Key id -> 32-byte key, from the keys Secret mounted as files (raw or base64 values)."""
    keys = {}
    for name in os.listdir(keys_dir):
        path = os.path.join(keys_dir, name)
        if name.startswith(".") or name == "active" or os.path.isdir(path):
            continue
        with open(path, "rb") as f:
            raw = f.read()
        keys[name] = raw if len(raw) == 32 else base64.b64decode(raw.strip(), validate=True)
    return keys


def open_envelope(envelope, keys, tenant_id, path):
    """The plaintext of one envelope found at `path` (a list of JSON keys) of `tenant_id`'s row."""
    if envelope.get("enc") != ENVELOPE_FORMAT:
        raise ValueError(f"{'.'.join(path)}: unsupported envelope {envelope.get('enc')!r}")
    kid = envelope["kid"]
    if kid not in keys:
        raise KeyError(f"{'.'.join(path)}: key id {kid!r} is not in the keyring")
    aad = json.dumps([ENVELOPE_FORMAT, kid, tenant_id, path],
                     separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    nonce = base64.b64decode(envelope["nonce"], validate=True)
    ciphertext = base64.b64decode(envelope["ct"], validate=True)  # includes the 16-byte tag
    try:
        return AESGCM(keys[kid]).decrypt(nonce, ciphertext, aad).decode("utf-8")
    except InvalidTag:
        raise ValueError(f"{'.'.join(path)}: decryption failed: the envelope was altered, "
                         "or copied from another row or field") from None


def open_document(document, keys, row_tenant_id):
    """The document with every envelope opened. `row_tenant_id` is the row's tenant_id column:
    envelopes are bound to the row, not to the tenantId the document claims."""
    if document.get("format") != DOCUMENT_FORMAT:
        raise ValueError(f"not a {DOCUMENT_FORMAT} document")
    if document.get("tenantId") != row_tenant_id:
        raise ValueError("the document names another tenant than its row")

    def walk(value, path):
        if isinstance(value, dict):
            if "enc" in value and "kid" in value:
                return open_envelope(value, keys, row_tenant_id, path)
            return {k: walk(v, path + [k]) for k, v in value.items()}
        return value

    return walk(document, [])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys-dir", required=True)
    parser.add_argument("--tenant", required=True, help="the row's tenant_id")
    args = parser.parse_args()
    try:
        plain = open_document(json.load(sys.stdin), load_keys(args.keys_dir), args.tenant)
    except (KeyError, ValueError) as e:
        sys.exit(f"error: {e}")
    json.dump(plain, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
