"""End-to-end check of sealgate's Alibaba AdvanceEncrypt / AdvanceDecrypt over
the RPC style (signature v1, HMAC-SHA1) with the older official SDK,
`aliyun-python-sdk-kms` on `aliyun-python-sdk-core`.

For every algorithm and padding (AES_GCM; AES_CBC and AES_ECB with
PKCS7_PADDING and NO_PADDING) it AdvanceEncrypts with an Aad and a given Iv
(AdvanceEncryptRequest, parameters in the query), checks the returned
metadata, then AdvanceDecrypts with only the CiphertextBlob (and the Aad)
through the SDK's generic CommonRequest — the SDK has no AdvanceDecrypt
class — with the parameters in a form body. A wrong Aad must fail for GCM.
Bytes parameters (Plaintext, Iv, Aad, CiphertextBlob) are Base64 in this
style.

Without --key-id it first creates a key (CreateKeyRequest) and, at the end,
rotates it (CreateKeyVersionRequest): AdvanceEncrypt then uses the new
primary version while Encrypt keeps the initial one, the old Advance blob
still opens, AdvanceDecrypt opens an Encrypt blob, and Decrypt refuses an
AdvanceEncrypt blob. Prints one JSON line per step; exits 1 at the first
failure.

The SDK reaches plain HTTP with request.set_endpoint("127.0.0.1:PORT") (or
CommonRequest.set_domain) and set_protocol_type("http").

Usage:
  alibaba_legacy_flow.py ENDPOINT ACCESS_KEY_ID ACCESS_KEY_SECRET [--key-id K] [--region R]
"""

import argparse
import base64
import json
import sys

from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest
from aliyunsdkkms.request.v20160120.AdvanceEncryptRequest import AdvanceEncryptRequest
from aliyunsdkkms.request.v20160120.CreateKeyRequest import CreateKeyRequest
from aliyunsdkkms.request.v20160120.CreateKeyVersionRequest import CreateKeyVersionRequest
from aliyunsdkkms.request.v20160120.DecryptRequest import DecryptRequest
from aliyunsdkkms.request.v20160120.EncryptRequest import EncryptRequest


class StepFailed(Exception):
    pass


def emit(step, ok, **extra):
    rec = {"step": step, "ok": ok}
    rec.update(extra)
    print(json.dumps(rec, sort_keys=True), flush=True)


def expect(cond, step, **why):
    if not cond:
        raise StepFailed(json.dumps({"step": step, **why}, sort_keys=True))


def b64(b):
    return base64.b64encode(b).decode()


def send(client, req, endpoint):
    req.set_protocol_type("http")
    return json.loads(client.do_action_with_exception(req))


def advance_decrypt(client, endpoint, blob, aad):
    req = CommonRequest()
    req.set_domain(endpoint)
    req.set_method("POST")
    req.set_version("2016-01-20")
    req.set_action_name("AdvanceDecrypt")
    req.add_body_params("CiphertextBlob", blob)
    if aad is not None:
        req.add_body_params("Aad", b64(aad))
    return send(client, req, endpoint)


CASES = [
    ("AES_GCM", None, bytes(range(12)), b"hello advance gcm"),
    ("AES_CBC", "PKCS7_PADDING", bytes(range(16)), b"hello advance cbc pkcs7"),
    ("AES_CBC", "NO_PADDING", bytes(range(16)), b"exactly 32 bytes of plaintext!!!"),
    ("AES_ECB", "PKCS7_PADDING", None, b"hello advance ecb pkcs7"),
    ("AES_ECB", "NO_PADDING", None, b"sixteen bytes!!!"),
]


def advance_encrypt(client, endpoint, key_id, plaintext, aad):
    req = AdvanceEncryptRequest()
    req.set_endpoint(endpoint)
    req.set_KeyId(key_id)
    req.set_Plaintext(b64(plaintext))
    req.set_Aad(b64(aad))
    return send(client, req, endpoint)


def rotation_steps(client, endpoint, key_id, aad, old):
    """AdvanceEncrypt follows the primary version; Encrypt keeps the initial
    one; Decrypt refuses an AdvanceEncrypt blob; old blobs still open."""
    req = CreateKeyVersionRequest()
    req.set_endpoint(endpoint)
    req.set_KeyId(key_id)
    v2 = send(client, req, endpoint)["KeyVersion"]["KeyVersionId"]
    expect(v2 and v2 != old["KeyVersionId"], "CreateKeyVersion", v2=v2)
    emit("CreateKeyVersion", True, key_version_id=v2)

    enc = advance_encrypt(client, endpoint, key_id, b"after rotation", aad)
    expect(enc.get("KeyVersionId") == v2, "AdvanceEncrypt(new primary)", resp=enc)
    emit("AdvanceEncrypt(new primary)", True)
    dec = advance_decrypt(client, endpoint, old["CiphertextBlob"], aad)
    expect(dec.get("KeyVersionId") == old["KeyVersionId"]
           and base64.b64decode(dec.get("Plaintext", "")) == old["plaintext"],
           "AdvanceDecrypt(old version)", resp=sorted(dec))
    emit("AdvanceDecrypt(old version)", True)

    req = EncryptRequest()
    req.set_endpoint(endpoint)
    req.set_KeyId(key_id)
    req.set_Plaintext("classic")
    classic = send(client, req, endpoint)
    expect(classic.get("KeyVersionId") == old["KeyVersionId"], "Encrypt(initial version)",
           resp=classic)
    emit("Encrypt(initial version)", True)
    opened = advance_decrypt(client, endpoint, classic["CiphertextBlob"], None)
    expect(base64.b64decode(opened.get("Plaintext", "")) == b"classic",
           "AdvanceDecrypt(Encrypt blob)", resp=sorted(opened))
    emit("AdvanceDecrypt(Encrypt blob)", True)

    req = DecryptRequest()
    req.set_endpoint(endpoint)
    req.set_CiphertextBlob(enc["CiphertextBlob"])
    try:
        send(client, req, endpoint)
    except ServerException as e:
        expect(e.get_error_code() == "InvalidCiphertext", "Decrypt(AdvanceEncrypt blob)",
               code=e.get_error_code())
        emit("Decrypt(AdvanceEncrypt blob) refused", True, code=e.get_error_code(),
             status=e.get_http_status())
    else:
        raise StepFailed(json.dumps({"step": "Decrypt(AdvanceEncrypt blob)", "got": "success"}))


def run(args):
    client = AcsClient(args.access_key_id, args.access_key_secret, args.region)
    key_id = args.key_id
    created = not key_id
    if not key_id:
        req = CreateKeyRequest()
        req.set_endpoint(args.endpoint)
        req.set_KeySpec("Aliyun_AES_256")
        req.set_KeyUsage("ENCRYPT/DECRYPT")
        key_id = send(client, req, args.endpoint)["KeyMetadata"]["KeyId"]
        emit("CreateKey", True, key_id=key_id)
    aad = b"sealgate legacy aad"
    first = None
    for algorithm, padding, iv, plaintext in CASES:
        step = "AdvanceEncrypt %s %s" % (algorithm, padding or "")
        req = AdvanceEncryptRequest()
        req.set_endpoint(args.endpoint)
        req.set_KeyId(key_id)
        req.set_Plaintext(b64(plaintext))
        req.set_Algorithm(algorithm)
        if padding:
            req.set_PaddingMode(padding)
        if iv is not None:
            req.set_Iv(b64(iv))
        req.set_Aad(b64(aad))
        enc = send(client, req, args.endpoint)
        expect(enc.get("KeyId") == key_id and enc.get("Algorithm") == algorithm
               and enc.get("CiphertextBlob") and enc.get("KeyVersionId"), step, resp=sorted(enc))
        if iv is not None:
            expect(enc.get("Iv") == b64(iv), step, why="Iv not echoed")
        if padding:
            expect(enc.get("PaddingMode") == padding, step, why="PaddingMode not echoed")
        emit(step, True, key_version_id=enc.get("KeyVersionId"))
        if first is None:
            first = dict(enc, plaintext=plaintext)

        dec = advance_decrypt(client, args.endpoint, enc["CiphertextBlob"], aad)
        expect(base64.b64decode(dec.get("Plaintext", "")) == plaintext
               and dec.get("KeyId") == key_id and dec.get("Algorithm") == algorithm,
               "AdvanceDecrypt " + step[15:], resp=sorted(dec))
        emit("AdvanceDecrypt " + step[15:], True)

        if algorithm == "AES_GCM":
            try:
                advance_decrypt(client, args.endpoint, enc["CiphertextBlob"], b"wrong aad")
            except ServerException as e:
                emit("AdvanceDecrypt wrong Aad refused", True, code=e.get_error_code(),
                     status=e.get_http_status())
            else:
                raise StepFailed(json.dumps({"step": "AdvanceDecrypt wrong Aad",
                                             "got": "success"}))
    if created:
        rotation_steps(client, args.endpoint, key_id, aad, first)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("endpoint", help="HOST:PORT of sealgate's Alibaba face")
    p.add_argument("access_key_id")
    p.add_argument("access_key_secret")
    p.add_argument("--key-id", help="an existing symmetric key; created when absent")
    p.add_argument("--region", default="cn-hangzhou")
    args = p.parse_args()
    try:
        run(args)
    except StepFailed as e:
        emit("failed", False, detail=json.loads(str(e)))
        return 1
    except (ServerException, ClientException) as e:
        emit("failed", False, error=type(e).__name__, code=e.get_error_code(),
             message=e.get_error_msg()[:500])
        return 1
    emit("done", True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
