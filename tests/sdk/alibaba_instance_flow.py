"""End-to-end check of sealgate's KMS instance API (dkms-gcs-0.2, protobuf,
RSA_PKCS1_SHA_256 request signatures) with the official
`alibabacloud-dkms-gcs` SDK.

Steps: AdvanceEncrypt in AES_GCM (with Aad), AES_CBC and AES_ECB (each
padding, with a given Iv where it applies) -> AdvanceDecrypt with only the
CiphertextBlob (and Aad) -> a wrong Aad is refused for GCM ->
AdvanceGenerateDataKey -> AdvanceDecrypt of its blob gives the same data
key. Prints one JSON line per step; exits 1 at the first failure.

The client key is the SDK's client key file: JSON {"KeyId": "KAAP.…",
"PrivateKeyData": "<Base64 PKCS#12>"} plus the PKCS#12 password (see
docs/kms-alibaba.md for making one with openssl and registering its public key).
The SDK reaches plain HTTP with Config(protocol="http",
endpoint="127.0.0.1:PORT").

Usage:
  alibaba_instance_flow.py ENDPOINT CLIENT_KEY_FILE PASSWORD KEY_ID
"""

import argparse
import json
import sys

from Tea.exceptions import TeaException, UnretryableException
from openapi.models import Config
from openapi_util.models import RuntimeOptions
from sdk import models
from sdk.client import Client


class StepFailed(Exception):
    pass


def emit(step, ok, **extra):
    rec = {"step": step, "ok": ok}
    rec.update(extra)
    print(json.dumps(rec, sort_keys=True), flush=True)


def expect(cond, step, **why):
    if not cond:
        raise StepFailed(json.dumps({"step": step, **why}, sort_keys=True, default=str))


RT = RuntimeOptions(autoretry=False)

CASES = [
    ("AES_GCM", None, None, b"hello instance gcm"),
    ("AES_GCM", None, bytes(range(12)), b"hello instance gcm, given iv"),
    ("AES_CBC", "PKCS7_PADDING", bytes(range(16)), b"hello instance cbc"),
    ("AES_CBC", "NO_PADDING", None, b"sixteen bytes!!!"),
    ("AES_ECB", "PKCS7_PADDING", None, b"hello instance ecb"),
    ("AES_ECB", "NO_PADDING", None, b"32 bytes of plaintext, exactly.."),
]


def run(args):
    with open(args.client_key_file) as f:
        client_key = f.read()
    c = Client(Config(protocol="http", endpoint=args.endpoint, client_key_content=client_key,
                      password=args.password))
    aad = b"sealgate instance aad"
    for algorithm, padding, iv, plaintext in CASES:
        step = "AdvanceEncrypt %s %s%s" % (algorithm, padding or "", " iv" if iv else "")
        req = models.AdvanceEncryptRequest(key_id=args.key_id, plaintext=plaintext,
                                           algorithm=algorithm, aad=aad)
        if padding:
            req.padding_mode = padding
        if iv:
            req.iv = iv
        enc = c.advance_encrypt_with_options(req, RT)
        expect(enc.algorithm == algorithm and enc.ciphertext_blob and enc.key_version_id, step,
               algorithm=enc.algorithm)
        if iv:
            expect(enc.iv == iv, step, why="Iv not echoed")
        emit(step, True, key_version_id=enc.key_version_id, blob_len=len(enc.ciphertext_blob))

        dec = c.advance_decrypt_with_options(
            models.AdvanceDecryptRequest(ciphertext_blob=enc.ciphertext_blob, aad=aad), RT)
        expect(dec.plaintext == plaintext and dec.key_version_id == enc.key_version_id,
               "AdvanceDecrypt" + step[14:])
        emit("AdvanceDecrypt" + step[14:], True)

        if algorithm == "AES_GCM" and not iv:
            try:
                c.advance_decrypt_with_options(
                    models.AdvanceDecryptRequest(ciphertext_blob=enc.ciphertext_blob,
                                                 aad=b"wrong"), RT)
            except TeaException as e:
                emit("AdvanceDecrypt wrong Aad refused", True, code=e.code,
                     status=(e.data or {}).get("httpCode"))
            else:
                raise StepFailed(json.dumps({"step": "AdvanceDecrypt wrong Aad", "got": "success"}))

    gdk = c.advance_generate_data_key_with_options(
        models.AdvanceGenerateDataKeyRequest(key_id=args.key_id, number_of_bytes=32, aad=aad), RT)
    expect(len(gdk.plaintext) == 32 and gdk.ciphertext_blob, "AdvanceGenerateDataKey")
    emit("AdvanceGenerateDataKey", True, key_version_id=gdk.key_version_id)
    dk = c.advance_decrypt_with_options(
        models.AdvanceDecryptRequest(ciphertext_blob=gdk.ciphertext_blob, aad=aad), RT)
    expect(dk.plaintext == gdk.plaintext, "AdvanceDecrypt(data key)")
    emit("AdvanceDecrypt(data key)", True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("endpoint", help="HOST:PORT of sealgate's KMS instance API")
    p.add_argument("client_key_file", help="the SDK's client key JSON file")
    p.add_argument("password", help="the client key's PKCS#12 password")
    p.add_argument("key_id", help="a symmetric key (KeyId or alias/...)")
    args = p.parse_args()
    try:
        run(args)
    except StepFailed as e:
        emit("failed", False, detail=json.loads(str(e)))
        return 1
    except (TeaException, UnretryableException) as e:
        emit("failed", False, error=type(e).__name__, code=getattr(e, "code", None),
             message=str(e)[:500])
        return 1
    emit("done", True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
