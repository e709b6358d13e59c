#!/usr/bin/env python3
"""Writes tests/data/deterministic_vectors.json: known-answer vectors for the
deterministic field envelope (`sgd1.`), computed from the layout docs/envelope.md
documents with Python's `cryptography` (AES-GCM-SIV) and `hmac`, not with
sealgate's own code. Run from the repository root:

    python3 tests/tools/deterministic_vectors.py > tests/data/deterministic_vectors.json
"""

import base64
import hashlib
import hmac
import json

from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV

KEY_ID = bytes.fromhex("8c1f2e3d4a5b46c7b8d9eaf0a1b2c3d4")
# the CMK material of each version (in the store it is random and sealed under the root key)
MATERIAL = {
    1: bytes(range(0x40, 0x60)),
    2: bytes(range(0x60, 0x80)),
    300: bytes(range(0x80, 0xA0)),
}
DOMAIN = b"sealgate derive v1\x00"
DET_LABEL = b"deterministic field\x00"
NONCE = bytes(12)


def leb128(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v == 0:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def derived_key(version, route_context):
    return hmac.new(MATERIAL[version], DOMAIN + DET_LABEL + route_context.encode(), hashlib.sha256).digest()


def b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def seal_raw(version, route_context, label, kind, plain, header=None):
    key = derived_key(version, route_context)
    if header is None:
        header = bytes([kind]) + KEY_ID + leb128(version)
    ctx = route_context.encode() + b"\x00" + label.encode()
    aad = b"sgd1" + header + leb128(len(ctx)) + ctx
    return header + AESGCMSIV(key).encrypt(NONCE, plain, aad)


def valid(name, version, route_context, label, value):
    parsed = json.loads(value)
    if isinstance(parsed, str):
        kind, plain = 1, parsed.encode()
        opened = json.dumps(parsed, ensure_ascii=False, separators=(",", ":"))
    else:
        kind, plain = 0, value.strip().encode()
        opened = value.strip()
    raw = seal_raw(version, route_context, label, kind, plain)
    return {
        "name": name,
        "cmk_version": version,
        "route_context": route_context,
        "label": label,
        "value": value,
        "derived_key_hex": derived_key(version, route_context).hex(),
        "envelope": "sgd1." + b64(raw),
        "opened": opened,
    }


def main():
    vs = [
        valid("string_email", 1, "people", "email", '"alice@example.com"'),
        valid("same_value_other_label", 1, "people", "contact.email", '"alice@example.com"'),
        valid("same_value_other_context", 1, "orders", "email", '"alice@example.com"'),
        valid("same_value_version_2", 2, "people", "email", '"alice@example.com"'),
        valid("version_300_two_byte_varint", 300, "people", "email", '"alice@example.com"'),
        valid("string_16_bytes", 1, "people", "ssn", '"0123456789abcdef"'),
        valid("string_empty", 1, "people", "note", '""'),
        valid("string_with_escapes", 1, "people", "name", '"caf\\u00e9 \\"q\\" \\/ x"'),
        valid("string_non_ascii", 2, "people", "name", '"Zoë 🦀"'),
        valid("number_exact_text", 1, "people", "balance", "12.50"),
        valid("number_with_whitespace", 1, "people", "balance", "  42\n"),
        valid("true", 1, "people", "flag", "true"),
        valid("null", 1, "people", "flag", "null"),
        valid("object", 2, "people", "address", '{"city":"Oslo","zip":[0,1]}'),
        valid("label_with_escaped_dot", 1, "people", "a\\.b", '"x"'),
    ]
    base = vs[0]
    raw = base64.urlsafe_b64decode(base["envelope"][5:] + "==")

    def invalid(name, envelope, error, version=1, route_context="people", label="email"):
        return {
            "name": name,
            "cmk_version": version,
            "route_context": route_context,
            "label": label,
            "envelope": envelope,
            "error": error,
        }

    flipped_tag = bytearray(raw)
    flipped_tag[-1] ^= 0x01
    flipped_ct = bytearray(raw)
    flipped_ct[18] ^= 0x80
    reserved = bytearray(raw)
    reserved[0] |= 0x04
    kind_swapped = bytearray(raw)
    kind_swapped[0] = 0
    # version 1 as a non-minimal two-byte varint (0x81 0x00)
    non_minimal = raw[:17] + b"\x81\x00" + raw[18:]
    ivs = [
        invalid("wrong_route_context", base["envelope"], "DoesNotOpen", route_context="orders"),
        invalid("wrong_label", base["envelope"], "DoesNotOpen", label="name"),
        invalid("opened_with_version_2_key", base["envelope"], "DoesNotOpen", version=2),
        invalid("flipped_tag_bit", "sgd1." + b64(bytes(flipped_tag)), "DoesNotOpen"),
        invalid("flipped_ciphertext_bit", "sgd1." + b64(bytes(flipped_ct)), "DoesNotOpen"),
        invalid("value_kind_changed", "sgd1." + b64(bytes(kind_swapped)), "DoesNotOpen"),
        invalid("missing_last_byte", "sgd1." + b64(raw[:-1]), "DoesNotOpen"),
        invalid("reserved_flag_bit", "sgd1." + b64(bytes(reserved)), "Malformed"),
        invalid("unknown_value_kind", "sgd1." + b64(bytes([2]) + raw[1:]), "Malformed"),
        invalid("non_minimal_version_varint", "sgd1." + b64(non_minimal), "Malformed"),
        invalid("padding", base["envelope"] + "=", "Malformed"),
        invalid("not_base64url_character", base["envelope"][:10] + "+" + base["envelope"][11:], "Malformed"),
        invalid("truncated_header", "sgd1." + b64(raw[:20]), "Malformed"),
        invalid("version_2_prefix", "sgd2." + base["envelope"][5:], "UnsupportedVersion"),
        invalid("random_envelope_prefix", "sg1." + base["envelope"][5:], "Malformed"),
    ]
    doc = {
        "description": (
            "Known-answer vectors for the sealgate deterministic field envelope, sgd1 "
            "(see docs/envelope.md, 'Deterministic envelope (sgd1.) byte layout'). Computed with "
            "Python's cryptography AES-GCM-SIV and hmac from the documented layout by "
            "tests/tools/deterministic_vectors.py. Each CMK version's key for a route context is "
            "HMAC-SHA256(material, \"sealgate derive v1\\u0000\" || \"deterministic field\\u0000\" "
            "|| route_context); the field context is route_context || 0x00 || label. Every valid "
            "vector seals to exactly `envelope` and opens back to `opened`; every invalid vector, "
            "parsed and opened with the key of `cmk_version` for `route_context` and the field "
            "context, fails with `error`."
        ),
        "cmk_key_id_hex": KEY_ID.hex(),
        "cmk_material_hex": {str(v): m.hex() for v, m in MATERIAL.items()},
        "valid": vs,
        "invalid": ivs,
    }
    print(json.dumps(doc, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
