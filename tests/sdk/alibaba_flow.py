"""End-to-end check of sealgate's Alibaba KMS face (OpenAPI 2016-01-20,
ACS3-HMAC-SHA256) with the official `alibabacloud-kms20160120` SDK.

Walks the life of a key against a running sealgate:

  CreateKey -> CreateAlias -> DescribeKey -> Encrypt (EncryptionContext)
  -> Decrypt (same context) -> Decrypt with another context is refused
     (InvalidCiphertext)
  -> GenerateDataKey -> Decrypt(data key blob) -> GenerateDataKeyWithoutPlaintext
  -> CreateKeyVersion -> ListKeyVersions (2) -> DescribeKey (new primary)
  -> Encrypt still uses the initial version (as Alibaba documents for KMS
     instances; AdvanceEncrypt follows the primary) -> both ciphertexts decrypt
  -> UpdateRotationPolicy -> ListKeys / ListAliases list them
  -> a wrong AccessKeySecret is refused (SignatureDoesNotMatch)

Asymmetric keys:

  CreateKey RSA_2048 SIGN/VERIFY -> GetPublicKey (PEM) -> AsymmetricSign
  (RSA_PSS_SHA_256 over a SHA-256 Digest; the signature is checked
  independently with the `cryptography` package against the PEM)
  -> AsymmetricVerify (true; false for another digest)
  -> CreateKey RSA_2048 ENCRYPT/DECRYPT -> AsymmetricEncrypt / AsymmetricDecrypt
     (RSAES_OAEP_SHA_256), and a blob made locally by `cryptography` with the
     published key opens with AsymmetricDecrypt
  -> CreateKey EC_SM2 is refused (InvalidParameter.KeySpec)

Prints one JSON line per step ({"step", "ok", ...}); exits 1 at the first
failure (2 for bad usage).

The SDK reaches plain HTTP through its Config: endpoint="127.0.0.1:PORT"
(host and port, no scheme) and protocol="http".

Usage:
  alibaba_flow.py ENDPOINT ACCESS_KEY_ID ACCESS_KEY_SECRET [--region R]
"""

import argparse
import base64
import hashlib
import json
import sys
import uuid

from alibabacloud_kms20160120 import models
from alibabacloud_kms20160120.client import Client
from alibabacloud_tea_openapi.models import Config
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, utils


class StepFailed(Exception):
    pass


def emit(step, ok, **extra):
    rec = {"step": step, "ok": ok}
    rec.update(extra)
    print(json.dumps(rec, sort_keys=True), flush=True)


def client_for(endpoint, key_id, secret, region):
    return Client(Config(access_key_id=key_id, access_key_secret=secret, endpoint=endpoint,
                         protocol="http", region_id=region))


def body(resp):
    return resp.body.to_map()


def expect(cond, step, **why):
    if not cond:
        raise StepFailed(json.dumps({"step": step, **why}, sort_keys=True))


def expect_error(step, code, fn):
    try:
        fn()
    except Exception as e:  # the SDK raises its client error with .code
        got = getattr(e, "code", None)
        expect(got == code, step, want=code, got=str(got))
        emit(step, True, code=got)
        return
    raise StepFailed(json.dumps({"step": step, "want": code, "got": "success"}))


def run(args):
    c = client_for(args.endpoint, args.access_key_id, args.access_key_secret, args.region)

    r = body(c.create_key(models.CreateKeyRequest(key_spec="Aliyun_AES_256",
                                                  key_usage="ENCRYPT/DECRYPT",
                                                  description="sealgate sdk flow")))
    meta = r["KeyMetadata"]
    key_id, v1 = meta["KeyId"], meta.get("PrimaryKeyVersion")
    expect(meta.get("KeyState") == "Enabled", "CreateKey", meta=meta)
    emit("CreateKey", True, key_id=key_id, primary=v1)

    alias = "alias/sealgate-flow-" + uuid.uuid4().hex[:8]
    c.create_alias(models.CreateAliasRequest(alias_name=alias, key_id=key_id))
    emit("CreateAlias", True, alias=alias)

    meta = body(c.describe_key(models.DescribeKeyRequest(key_id=alias)))["KeyMetadata"]
    expect(meta["KeyId"] == key_id, "DescribeKey", meta=meta)
    emit("DescribeKey", True, key_state=meta.get("KeyState"))

    ctx = {"tenant": "acme", "field": "ssn with space"}
    plaintext = base64.b64encode(b"hello sealgate").decode()
    enc = body(c.encrypt(models.EncryptRequest(key_id=alias, plaintext=plaintext,
                                               encryption_context=ctx)))
    blob1, ver1 = enc["CiphertextBlob"], enc.get("KeyVersionId")
    expect(enc["KeyId"] == key_id, "Encrypt", resp=enc)
    emit("Encrypt", True, key_version_id=ver1)

    dec = body(c.decrypt(models.DecryptRequest(ciphertext_blob=blob1, encryption_context=ctx)))
    expect(dec["Plaintext"] == plaintext and dec["KeyId"] == key_id, "Decrypt", resp=dec)
    emit("Decrypt", True)

    expect_error("Decrypt with another EncryptionContext", "InvalidCiphertext",
                 lambda: c.decrypt(models.DecryptRequest(ciphertext_blob=blob1,
                                                         encryption_context={"tenant": "evil"})))

    gdk = body(c.generate_data_key(models.GenerateDataKeyRequest(key_id=key_id, number_of_bytes=32,
                                                                 encryption_context=ctx)))
    expect(len(base64.b64decode(gdk["Plaintext"])) == 32, "GenerateDataKey", keys=sorted(gdk))
    dk = body(c.decrypt(models.DecryptRequest(ciphertext_blob=gdk["CiphertextBlob"],
                                              encryption_context=ctx)))
    expect(dk["Plaintext"] == gdk["Plaintext"], "Decrypt(data key)")
    emit("GenerateDataKey", True)

    nop = body(c.generate_data_key_without_plaintext(
        models.GenerateDataKeyWithoutPlaintextRequest(key_id=key_id, key_spec="AES_128")))
    expect("Plaintext" not in nop and nop.get("CiphertextBlob"), "GenerateDataKeyWithoutPlaintext",
           keys=sorted(nop))
    dk = body(c.decrypt(models.DecryptRequest(ciphertext_blob=nop["CiphertextBlob"])))
    expect(len(base64.b64decode(dk["Plaintext"])) == 16, "Decrypt(AES_128 data key)")
    emit("GenerateDataKeyWithoutPlaintext", True)

    nv = body(c.create_key_version(models.CreateKeyVersionRequest(key_id=key_id)))["KeyVersion"]
    v2 = nv["KeyVersionId"]
    expect(v2 and v2 != ver1, "CreateKeyVersion", version=nv)
    emit("CreateKeyVersion", True, key_version_id=v2)

    lv = body(c.list_key_versions(models.ListKeyVersionsRequest(key_id=key_id, page_size=10)))
    ids = [v["KeyVersionId"] for v in lv["KeyVersions"]["KeyVersion"]]
    expect(v2 in ids and len(ids) == 2 and lv["TotalCount"] == 2, "ListKeyVersions", ids=ids)
    emit("ListKeyVersions", True, count=len(ids))

    dv = body(c.describe_key_version(models.DescribeKeyVersionRequest(key_id=key_id,
                                                                       key_version_id=v2)))
    expect(dv["KeyVersion"]["KeyVersionId"] == v2, "DescribeKeyVersion")
    meta = body(c.describe_key(models.DescribeKeyRequest(key_id=key_id)))["KeyMetadata"]
    expect(meta.get("PrimaryKeyVersion") == v2, "DescribeKey(after rotation)", meta=meta)
    emit("DescribeKey(after rotation)", True, primary=v2)

    # Encrypt keeps the initial version after a rotation (AdvanceEncrypt
    # follows the primary one: see alibaba_legacy_flow.py).
    enc2 = body(c.encrypt(models.EncryptRequest(key_id=key_id, plaintext=plaintext,
                                                encryption_context=ctx)))
    expect(enc2.get("KeyVersionId") == ver1, "Encrypt(initial version after rotation)", resp=enc2)
    emit("Encrypt(initial version after rotation)", True)

    for blob in (blob1, enc2["CiphertextBlob"]):
        d = body(c.decrypt(models.DecryptRequest(ciphertext_blob=blob, encryption_context=ctx)))
        expect(d["Plaintext"] == plaintext and d.get("KeyVersionId") == ver1,
               "Decrypt(after rotation)", resp=d)
    emit("Decrypt(after rotation)", True)

    c.update_rotation_policy(models.UpdateRotationPolicyRequest(
        key_id=key_id, enable_automatic_rotation=True, rotation_interval="30d"))
    meta = body(c.describe_key(models.DescribeKeyRequest(key_id=key_id)))["KeyMetadata"]
    expect(meta.get("AutomaticRotation") == "Enabled", "UpdateRotationPolicy", meta=meta)
    emit("UpdateRotationPolicy", True, interval=meta.get("RotationInterval"))

    keys = body(c.list_keys(models.ListKeysRequest(page_size=100)))
    expect(any(k["KeyId"] == key_id for k in keys["Keys"]["Key"]), "ListKeys")
    aliases = body(c.list_aliases(models.ListAliasesRequest(page_size=100)))
    expect(any(a["AliasName"] == alias and a["KeyId"] == key_id
               for a in aliases["Aliases"]["Alias"]), "ListAliases")
    emit("ListKeys and ListAliases", True)

    bad = client_for(args.endpoint, args.access_key_id, args.access_key_secret + "x", args.region)
    expect_error("wrong AccessKeySecret", "SignatureDoesNotMatch",
                 lambda: bad.describe_key(models.DescribeKeyRequest(key_id=key_id)))

    asymmetric(c)


def asymmetric(c):
    meta = body(c.create_key(models.CreateKeyRequest(key_spec="RSA_2048",
                                                     key_usage="SIGN/VERIFY")))["KeyMetadata"]
    sk, skv = meta["KeyId"], meta["PrimaryKeyVersion"]
    expect(meta["KeySpec"] == "RSA_2048" and meta["KeyUsage"] == "SIGN/VERIFY" and skv,
           "CreateKey(RSA_2048 SIGN/VERIFY)", meta=meta)
    emit("CreateKey(RSA_2048 SIGN/VERIFY)", True, key_id=sk, version=skv)

    pk = body(c.get_public_key(models.GetPublicKeyRequest(key_id=sk, key_version_id=skv)))
    expect(pk["KeyId"] == sk and pk["KeyVersionId"] == skv
           and pk["PublicKey"].startswith("-----BEGIN PUBLIC KEY-----"), "GetPublicKey", resp=pk)
    public = serialization.load_pem_public_key(pk["PublicKey"].encode())
    expect(public.key_size == 2048, "GetPublicKey", key_size=public.key_size)
    emit("GetPublicKey", True)

    message = b"pay 10 to bob"
    digest = hashlib.sha256(message).digest()
    d64 = base64.b64encode(digest).decode()
    sig = body(c.asymmetric_sign(models.AsymmetricSignRequest(
        key_id=sk, key_version_id=skv, algorithm="RSA_PSS_SHA_256", digest=d64)))
    expect(sig["KeyId"] == sk and sig["KeyVersionId"] == skv and sig.get("Value"),
           "AsymmetricSign", resp=sig)
    emit("AsymmetricSign", True)

    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
    raw_sig = base64.b64decode(sig["Value"])
    try:
        public.verify(raw_sig, message, pss, hashes.SHA256())
        public.verify(raw_sig, digest, pss, utils.Prehashed(hashes.SHA256()))
    except InvalidSignature:
        raise StepFailed(json.dumps({"step": "AsymmetricSign(verified by cryptography)"}))
    try:
        public.verify(raw_sig, b"pay 99 to bob", pss, hashes.SHA256())
        raise StepFailed(json.dumps({"step": "AsymmetricSign(verified by cryptography)",
                                     "why": "another message verified"}))
    except InvalidSignature:
        pass
    emit("AsymmetricSign(verified by cryptography)", True)

    def verify(d):
        return body(c.asymmetric_verify(models.AsymmetricVerifyRequest(
            key_id=sk, key_version_id=skv, algorithm="RSA_PSS_SHA_256", digest=d,
            value=sig["Value"])))

    v = verify(d64)
    expect(v["Value"] is True and v["KeyId"] == sk, "AsymmetricVerify", resp=v)
    emit("AsymmetricVerify", True)
    other = base64.b64encode(hashlib.sha256(b"pay 99 to bob").digest()).decode()
    v = verify(other)
    expect(v["Value"] is False, "AsymmetricVerify(tampered digest)", resp=v)
    emit("AsymmetricVerify(tampered digest)", True)

    meta = body(c.create_key(models.CreateKeyRequest(key_spec="RSA_2048",
                                                     key_usage="ENCRYPT/DECRYPT")))["KeyMetadata"]
    ek, ekv = meta["KeyId"], meta["PrimaryKeyVersion"]
    expect(meta["KeyUsage"] == "ENCRYPT/DECRYPT", "CreateKey(RSA_2048 ENCRYPT/DECRYPT)", meta=meta)
    emit("CreateKey(RSA_2048 ENCRYPT/DECRYPT)", True, key_id=ek)

    secret = base64.b64encode(b"a 32-byte data key for sealgate!").decode()
    enc = body(c.asymmetric_encrypt(models.AsymmetricEncryptRequest(
        key_id=ek, key_version_id=ekv, algorithm="RSAES_OAEP_SHA_256", plaintext=secret)))
    expect(enc["KeyId"] == ek and enc["KeyVersionId"] == ekv
           and len(base64.b64decode(enc["CiphertextBlob"])) == 256, "AsymmetricEncrypt", resp=enc)
    emit("AsymmetricEncrypt", True)

    dec = body(c.asymmetric_decrypt(models.AsymmetricDecryptRequest(
        key_id=ek, key_version_id=ekv, algorithm="RSAES_OAEP_SHA_256",
        ciphertext_blob=enc["CiphertextBlob"])))
    expect(dec["Plaintext"] == secret and dec["KeyId"] == ek, "AsymmetricDecrypt", resp=dec)
    emit("AsymmetricDecrypt", True)

    epk = body(c.get_public_key(models.GetPublicKeyRequest(key_id=ek, key_version_id=ekv)))
    local = serialization.load_pem_public_key(epk["PublicKey"].encode()).encrypt(
        b"sealed outside KMS",
        padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))
    dec = body(c.asymmetric_decrypt(models.AsymmetricDecryptRequest(
        key_id=ek, key_version_id=ekv, algorithm="RSAES_OAEP_SHA_1",
        ciphertext_blob=base64.b64encode(local).decode())))
    expect(base64.b64decode(dec["Plaintext"]) == b"sealed outside KMS",
           "AsymmetricDecrypt(encrypted by cryptography)", resp=dec)
    emit("AsymmetricDecrypt(encrypted by cryptography)", True)

    expect_error("AsymmetricSign(wrong KeyVersionId)", "Forbidden.KeyVersionNotFound",
                 lambda: c.asymmetric_sign(models.AsymmetricSignRequest(
                     key_id=sk, key_version_id=sk + "-v2", algorithm="RSA_PSS_SHA_256",
                     digest=d64)))
    expect_error("CreateKey(EC_SM2)", "InvalidParameter.KeySpec",
                 lambda: c.create_key(models.CreateKeyRequest(key_spec="EC_SM2",
                                                              key_usage="SIGN/VERIFY")))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("endpoint", help="HOST:PORT of sealgate's Alibaba face")
    p.add_argument("access_key_id")
    p.add_argument("access_key_secret")
    p.add_argument("--region", default="cn-hangzhou")
    args = p.parse_args()
    try:
        run(args)
    except StepFailed as e:
        emit("failed", False, detail=json.loads(str(e)))
        return 1
    except Exception as e:  # an SDK error where success was expected
        emit("failed", False, error=type(e).__name__, code=getattr(e, "code", None),
             message=str(e)[:500])
        return 1
    emit("done", True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
