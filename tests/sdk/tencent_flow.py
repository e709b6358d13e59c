"""End-to-end check of sealgate's Tencent KMS face with the official SDK.

Drives `tencentcloud-sdk-python-kms` (see requirements.txt) against a running
sealgate and walks the life of a key:

  CreateKey -> Encrypt -> Decrypt -> GenerateDataKey -> Decrypt(data key blob)
  -> DisableKey -> Encrypt refused (ResourceUnavailable.CmkDisabled)
  -> EnableKey -> EnableKeyRotation + GetKeyRotationStatus -> rotate
  -> old ciphertexts still decrypt, new ones too
  -> a wrong SecretKey is refused (AuthFailure.SignatureFailure)
  -> asymmetric keys: CreateKey ASYMMETRIC_SIGN_VERIFY_ECC and
     ASYMMETRIC_SIGN_VERIFY_RSA_2048 -> GetPublicKey -> SignByAsymmetricKey
     (RAW and DIGEST) -> VerifyByAsymmetricKey true, false for another message;
     the public key and signatures are checked with the `cryptography` package
     (independent of sealgate); CreateKey ASYMMETRIC_DECRYPT_RSA_2048 ->
     GetPublicKey -> encrypt locally with RSA-OAEP-SHA256 -> AsymmetricRsaDecrypt

The rotation itself is triggered by `--rotate-cmd` (a shell command run
between the steps; `{key_id}` in it is replaced by the CMK's id, which is
also exported as SEALGATE_KEY_ID), e.g. `sealgate key rotate {key_id}`.
Without it the script calls the API's RotateKey action.

Prints one JSON line per step ({"step", "ok", ...}) and exits 1 at the first
failure (2 for bad usage).

Usage:
  tencent_flow.py [--endpoint HOST:PORT] [--secret-id ID] [--secret-key KEY]
                  [--region R] [--rotate-cmd CMD]
Defaults come from SEALGATE_TENCENT_ENDPOINT, TENCENTCLOUD_SECRET_ID and
TENCENTCLOUD_SECRET_KEY.
"""

import argparse
import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid

from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.kms.v20190118 import kms_client, models


class StepFailed(Exception):
    pass


def emit(step, ok, **extra):
    rec = {"step": step, "ok": ok}
    rec.update(extra)
    print(json.dumps(rec, sort_keys=True), flush=True)


def client_for(endpoint, secret_id, secret_key, region):
    http = HttpProfile(endpoint=endpoint, protocol="http", reqTimeout=30)
    profile = ClientProfile(httpProfile=http)
    return kms_client.KmsClient(credential.Credential(secret_id, secret_key), region, profile)


_last_sent = {}


def call(client, action, **params):
    # sealgate accepts a signed request once (replay protection), and TC3
    # signs only the body, Host, Content-Type and the second, not the action:
    # a call with the same body as one sent in the same second (DisableKey
    # then EnableKey of one key, the same blob decrypted twice) carries the
    # same signature and would be refused, so wait for the next second
    # first. The SDK stamps the request between the two clock reads around
    # the call, so the second after the later read is surely a new one.
    key = (id(client), json.dumps(params, sort_keys=True))
    while int(time.time()) <= _last_sent.get(key, -1):
        time.sleep(0.05)
    req = getattr(models, action + "Request")()
    req.from_json_string(json.dumps(params))
    try:
        return getattr(client, action)(req)
    finally:
        _last_sent[key] = int(time.time())


def step(name, fn):
    try:
        extra = fn() or {}
    except TencentCloudSDKException as e:
        emit(name, False, code=e.get_code(), message=e.get_message())
        raise StepFailed(name)
    except StepFailed:
        raise
    except Exception as e:  # a wrong answer, a network error
        emit(name, False, error="%s: %s" % (type(e).__name__, e))
        raise StepFailed(name)
    emit(name, True, **extra)


def expect_error(name, code, fn):
    try:
        fn()
    except TencentCloudSDKException as e:
        if e.get_code() == code:
            emit(name, True, code=code)
            return
        emit(name, False, expected=code, code=e.get_code(), message=e.get_message())
        raise StepFailed(name)
    except Exception as e:
        emit(name, False, expected=code, error="%s: %s" % (type(e).__name__, e))
        raise StepFailed(name)
    emit(name, False, expected=code, error="the call succeeded")
    raise StepFailed(name)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def run(args):
    kms = client_for(args.endpoint, args.secret_id, args.secret_key, args.region)
    st = {}
    message = b"sealgate tencent flow \x00\xff"
    context = json.dumps({"purpose": "sdk-flow"})

    def create_key():
        r = call(kms, "CreateKey", Alias="sdkflow-" + uuid.uuid4().hex[:12], Description="tencent_flow.py")
        check(r.KeyId, "no KeyId")
        check(r.KeyState == "Enabled", "KeyState %r" % r.KeyState)
        check(r.KeyUsage == "ENCRYPT_DECRYPT", "KeyUsage %r" % r.KeyUsage)
        st["key_id"] = r.KeyId
        return {"key_id": r.KeyId}

    def encrypt():
        r = call(kms, "Encrypt", KeyId=st["key_id"], Plaintext=base64.b64encode(message).decode(),
                 EncryptionContext=context)
        check(r.CiphertextBlob, "no CiphertextBlob")
        check(r.KeyId == st["key_id"], "KeyId %r" % r.KeyId)
        st["blob_v1"] = r.CiphertextBlob
        return {"ciphertext_len": len(r.CiphertextBlob)}

    def decrypt(blob_key, want, ctx):
        def f():
            params = {"CiphertextBlob": st[blob_key]}
            if ctx is not None:
                params["EncryptionContext"] = ctx
            r = call(kms, "Decrypt", **params)
            check(base64.b64decode(r.Plaintext) == want(), "plaintext differs")
            check(r.KeyId == st["key_id"], "KeyId %r" % r.KeyId)
        return f

    def generate_data_key():
        r = call(kms, "GenerateDataKey", KeyId=st["key_id"], KeySpec="AES_256")
        dk = base64.b64decode(r.Plaintext)
        check(len(dk) == 32, "data key is %d bytes" % len(dk))
        check(r.CiphertextBlob, "no CiphertextBlob")
        st["data_key"], st["dk_blob"] = dk, r.CiphertextBlob
        return {"data_key_len": len(dk)}

    def rotate():
        if args.rotate_cmd:
            cmd = args.rotate_cmd.replace("{key_id}", st["key_id"])
            env = dict(os.environ, SEALGATE_KEY_ID=st["key_id"])
            p = subprocess.run(cmd, shell=True, env=env, capture_output=True, text=True, timeout=120)
            check(p.returncode == 0, "rotate command exited %d: %s" % (p.returncode, p.stderr.strip()[-500:]))
            return {"via": "command"}
        call(kms, "RotateKey", KeyId=st["key_id"])
        return {"via": "RotateKey"}

    def encrypt_after_rotation():
        r = call(kms, "Encrypt", KeyId=st["key_id"], Plaintext=base64.b64encode(message).decode(),
                 EncryptionContext=context)
        st["blob_v2"] = r.CiphertextBlob
        check(r.CiphertextBlob != st["blob_v1"], "same ciphertext after rotation")

    def rotation_enable():
        call(kms, "EnableKeyRotation", KeyId=st["key_id"], RotateDays=30)
        r = call(kms, "GetKeyRotationStatus", KeyId=st["key_id"])
        check(r.KeyRotationEnabled is True, "KeyRotationEnabled %r" % r.KeyRotationEnabled)

    def describe():
        r = call(kms, "DescribeKey", KeyId=st["key_id"])
        check(r.KeyMetadata.KeyId == st["key_id"], "KeyMetadata.KeyId")
        check(r.KeyMetadata.KeyState == "Enabled", "KeyState %r" % r.KeyMetadata.KeyState)

    step("CreateKey", create_key)
    step("Encrypt", encrypt)
    step("Decrypt", decrypt("blob_v1", lambda: message, context))
    expect_error("Decrypt with another EncryptionContext", "InvalidParameterValue.InvalidCiphertext",
                 lambda: call(kms, "Decrypt", CiphertextBlob=st["blob_v1"],
                              EncryptionContext=json.dumps({"purpose": "other"})))
    step("GenerateDataKey", generate_data_key)
    step("Decrypt data key", decrypt("dk_blob", lambda: st["data_key"], None))
    step("DisableKey", lambda: call(kms, "DisableKey", KeyId=st["key_id"]) and None)
    expect_error("Encrypt while disabled", "ResourceUnavailable.CmkDisabled",
                 lambda: call(kms, "Encrypt", KeyId=st["key_id"], Plaintext="AA=="))
    step("EnableKey", lambda: call(kms, "EnableKey", KeyId=st["key_id"]) and None)
    step("DescribeKey", describe)
    step("EnableKeyRotation", rotation_enable)
    step("Rotate", rotate)
    step("Encrypt after rotation", encrypt_after_rotation)
    step("Decrypt old ciphertext", decrypt("blob_v1", lambda: message, context))
    step("Decrypt old data key", decrypt("dk_blob", lambda: st["data_key"], None))
    step("Decrypt new ciphertext", decrypt("blob_v2", lambda: message, context))
    wrong = client_for(args.endpoint, args.secret_id, args.secret_key + "x", args.region)
    expect_error("Wrong SecretKey", "AuthFailure.SignatureFailure",
                 lambda: call(wrong, "Encrypt", KeyId=st["key_id"], Plaintext="AA=="))
    asymmetric(kms)


def asymmetric(kms):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding

    st = {}
    doc = b"an order to sign"
    b64 = lambda b: base64.b64encode(b).decode()

    def create(usage):
        def f():
            r = call(kms, "CreateKey", Alias="sdkasym-" + uuid.uuid4().hex[:12], KeyUsage=usage)
            check(r.KeyUsage == usage, "KeyUsage %r" % r.KeyUsage)
            st[usage] = r.KeyId
            pk = call(kms, "GetPublicKey", KeyId=r.KeyId)
            check(pk.KeyId == r.KeyId, "GetPublicKey KeyId")
            der = serialization.load_der_public_key(base64.b64decode(pk.PublicKey))
            pem = serialization.load_pem_public_key(pk.PublicKeyPem.encode())
            check(der.public_numbers() == pem.public_numbers(), "PublicKey and PublicKeyPem differ")
            st[usage + "/pub"] = der
            return {"key_id": r.KeyId, "public_key": pk.PublicKey}
        return f

    def sign_verify(usage, algorithm, verify_local):
        def f():
            key = st[usage]
            raw = call(kms, "SignByAsymmetricKey", KeyId=key, Algorithm=algorithm, Message=b64(doc))
            sig = base64.b64decode(raw.Signature)
            verify_local(st[usage + "/pub"], sig, doc)
            digest = hashlib.sha256(doc).digest()
            dg = call(kms, "SignByAsymmetricKey", KeyId=key, Algorithm=algorithm,
                      Message=b64(digest), MessageType="DIGEST")
            verify_local(st[usage + "/pub"], base64.b64decode(dg.Signature), doc)
            ok = call(kms, "VerifyByAsymmetricKey", KeyId=key, Algorithm=algorithm,
                      Message=b64(doc), SignatureValue=raw.Signature)
            check(ok.SignatureValid is True, "SignatureValid %r" % ok.SignatureValid)
            bad = call(kms, "VerifyByAsymmetricKey", KeyId=key, Algorithm=algorithm,
                       Message=b64(doc + b"!"), SignatureValue=raw.Signature)
            check(bad.SignatureValid is False, "tampered message verified")
            return {"signature": raw.Signature}
        return f

    def ecdsa_local(pub, sig, msg):
        pub.verify(sig, msg, ec.ECDSA(hashes.SHA256()))

    def pss_local(pub, sig, msg):
        pub.verify(sig, msg, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                   hashes.SHA256())

    def pkcs1_local(pub, sig, msg):
        pub.verify(sig, msg, padding.PKCS1v15(), hashes.SHA256())

    def rsa_decrypt():
        usage = "ASYMMETRIC_DECRYPT_RSA_2048"
        secret = b"a session key, 32 bytes long...."
        ct = st[usage + "/pub"].encrypt(
            secret, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
        r = call(kms, "AsymmetricRsaDecrypt", KeyId=st[usage], Ciphertext=b64(ct),
                 Algorithm="RSAES_OAEP_SHA_256")
        check(base64.b64decode(r.Plaintext) == secret, "plaintext differs")
        check(r.KeyId == st[usage], "KeyId %r" % r.KeyId)

    step("CreateKey ECC", create("ASYMMETRIC_SIGN_VERIFY_ECC"))
    step("Sign ECC", sign_verify("ASYMMETRIC_SIGN_VERIFY_ECC", "ECC_P256_R1", ecdsa_local))
    step("CreateKey RSA sign", create("ASYMMETRIC_SIGN_VERIFY_RSA_2048"))
    step("Sign RSA PSS", sign_verify("ASYMMETRIC_SIGN_VERIFY_RSA_2048", "RSA_PSS_SHA_256", pss_local))
    step("Sign RSA PKCS1", sign_verify("ASYMMETRIC_SIGN_VERIFY_RSA_2048", "RSA_PKCS1_SHA_256", pkcs1_local))
    step("CreateKey RSA decrypt", create("ASYMMETRIC_DECRYPT_RSA_2048"))
    step("AsymmetricRsaDecrypt", rsa_decrypt)
    expect_error("Sign with a decryption key", "InvalidParameterValue.InvalidKeyUsage",
                 lambda: call(kms, "SignByAsymmetricKey", KeyId=st["ASYMMETRIC_DECRYPT_RSA_2048"],
                              Algorithm="RSA_PSS_SHA_256", Message=b64(doc)))
    expect_error("CreateKey SM2", "UnsupportedOperation.UnsupportedKeyUsageInCurrentRegion",
                 lambda: call(kms, "CreateKey", Alias="sdksm2-" + uuid.uuid4().hex[:12],
                              KeyUsage="ASYMMETRIC_SIGN_VERIFY_SM2"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoint", default=os.environ.get("SEALGATE_TENCENT_ENDPOINT"))
    ap.add_argument("--secret-id", default=os.environ.get("TENCENTCLOUD_SECRET_ID"))
    ap.add_argument("--secret-key", default=os.environ.get("TENCENTCLOUD_SECRET_KEY"))
    ap.add_argument("--region", default="ap-guangzhou")
    ap.add_argument("--rotate-cmd", default=None)
    args = ap.parse_args(argv)
    if not (args.endpoint and args.secret_id and args.secret_key):
        ap.print_usage(sys.stderr)
        print("endpoint, secret id and secret key are required", file=sys.stderr)
        return 2
    try:
        run(args)
    except StepFailed:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
