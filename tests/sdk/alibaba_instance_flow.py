"""End-to-end check of sealgate's KMS instance API (dkms-gcs-0.2, protobuf,
RSA_PKCS1_SHA_256 request signatures) with the official
`alibabacloud-dkms-gcs` SDK.

Steps: AdvanceEncrypt in AES_GCM (with Aad), AES_CBC and AES_ECB (each
padding, with a given Iv where it applies) -> AdvanceDecrypt with only the
CiphertextBlob (and Aad) -> a wrong Aad is refused for GCM ->
AdvanceGenerateDataKey -> AdvanceDecrypt of its blob gives the same data
key; then the rest of the instance API: Encrypt / Decrypt (AES_GCM with and
without Aad, a tampered Aad refused, AES_CBC, AES_ECB; AdvanceDecrypt of an
Encrypt ciphertext), GenerateDataKey (its blob decrypts to the data key),
GenerateRandom (lengths and bounds), the four data key pair actions (the
private key decrypts back and matches the public key), an unknown client key
refused; with --rsa-sign-key / --ec-sign-key: GetPublicKey parses as the
key's type, Sign (RAW and DIGEST, checked by `cryptography`), Verify true
and tampered false; with --rsa-encrypt-key: RSAES-OAEP Encrypt / Decrypt;
wrong key usages refused; with --disabled-key: a disabled key refused; with
--rotated (KEY_ID has a second version): Encrypt keeps the initial version
while AdvanceEncrypt takes the primary one; with
--ca: HTTPS, the server certificate verified against that CA (and, with
--wrong-ca, refused against another). Prints one JSON line per step; exits
1 at the first failure.

The client key is the SDK's client key file: JSON {"KeyId": "KAAP.…",
"PrivateKeyData": "<Base64 PKCS#12>"} plus the PKCS#12 password (see
docs/kms-alibaba.md for making one with openssl and registering its public key).
The SDK reaches plain HTTP with Config(protocol="http",
endpoint="127.0.0.1:PORT"); with --ca it speaks HTTPS and checks the
certificate against the CA file (RuntimeOptions(verify=CA)).

Usage:
  alibaba_instance_flow.py ENDPOINT CLIENT_KEY_FILE PASSWORD KEY_ID
      [--ca CA_PEM [--wrong-ca OTHER_CA_PEM]] [--rsa-sign-key K]
      [--ec-sign-key K] [--rsa-encrypt-key K] [--disabled-key K] [--rotated]
"""

import argparse
import hashlib
import json
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

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


def refused(step, want_code, call):
    """Runs `call`, which must fail with the instance API error `want_code`."""
    try:
        call()
    except TeaException as e:
        expect(e.code == want_code, step, want=want_code, got=e.code, message=e.message)
        emit(step, True, code=e.code, status=(e.data or {}).get("httpCode"))
        return
    raise StepFailed(json.dumps({"step": step, "got": "success"}))

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
    protocol = "https" if args.ca else "http"
    if args.ca:
        RT.verify = args.ca
    c = Client(Config(protocol=protocol, endpoint=args.endpoint, client_key_content=client_key,
                      password=args.password))
    if args.wrong_ca:
        wrong_ca_refused(c, args)
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

    instance_api(c, args, client_key, protocol)


def instance_api(c, args, client_key, protocol):
    key = args.key_id
    aad = b"sealgate instance aad"
    pt = b"4111-1111-1111-1111"

    # Encrypt / Decrypt: the ciphertext alone; Iv, Algorithm, Aad kept beside it
    for with_aad in (True, False):
        name = "Encrypt AES_GCM" + ("" if with_aad else " no Aad")
        req = models.EncryptRequest(key_id=key, plaintext=pt)
        if with_aad:
            req.aad = aad
        enc = c.encrypt_with_options(req, RT)
        expect(enc.algorithm == "AES_GCM" and len(enc.iv) == 12
               and len(enc.ciphertext_blob) == len(pt) + 16 and enc.key_id, name,
               algorithm=enc.algorithm, iv=len(enc.iv or b""), blob=len(enc.ciphertext_blob or b""))
        emit(name, True, blob_len=len(enc.ciphertext_blob))
        dreq = models.DecryptRequest(key_id=key, ciphertext_blob=enc.ciphertext_blob,
                                     iv=enc.iv, algorithm=enc.algorithm)
        if with_aad:
            dreq.aad = aad
        dec = c.decrypt_with_options(dreq, RT)
        expect(dec.plaintext == pt and dec.key_id == enc.key_id, "Decrypt" + name[7:])
        emit("Decrypt" + name[7:], True)
        if with_aad:
            refused("Decrypt tampered Aad refused", "InvalidCiphertext",
                    lambda: c.decrypt_with_options(models.DecryptRequest(
                        key_id=key, ciphertext_blob=enc.ciphertext_blob, iv=enc.iv,
                        algorithm="AES_GCM", aad=b"sealgate instance aaD"), RT))
            refused("Decrypt without its Aad refused", "InvalidCiphertext",
                    lambda: c.decrypt_with_options(models.DecryptRequest(
                        key_id=key, ciphertext_blob=enc.ciphertext_blob, iv=enc.iv,
                        algorithm="AES_GCM"), RT))
            adv = c.advance_decrypt_with_options(models.AdvanceDecryptRequest(
                ciphertext_blob=enc.ciphertext_blob, key_id=key, algorithm="AES_GCM",
                iv=enc.iv, aad=aad), RT)
            expect(adv.plaintext == pt, "AdvanceDecrypt(Encrypt ciphertext)")
            emit("AdvanceDecrypt(Encrypt ciphertext)", True, key_version_id=adv.key_version_id)
            if args.rotated:
                # Encrypt keeps the initial version; AdvanceEncrypt takes the primary
                primary = c.advance_encrypt_with_options(models.AdvanceEncryptRequest(
                    key_id=key, plaintext=pt), RT).key_version_id
                expect(adv.key_version_id.endswith("-v1") and not primary.endswith("-v1"),
                       "Encrypt uses the initial version", encrypt=adv.key_version_id,
                       advance_encrypt=primary)
                emit("Encrypt uses the initial version", True, encrypt=adv.key_version_id,
                     advance_encrypt=primary)

    for algorithm, pad, iv in (("AES_CBC", "PKCS7_PADDING", bytes(range(16))),
                               ("AES_ECB", "NO_PADDING", None)):
        name = "Encrypt %s %s" % (algorithm, pad)
        data = b"sixteen bytes!!!"
        req = models.EncryptRequest(key_id=key, plaintext=data, algorithm=algorithm,
                                    padding_mode=pad)
        if iv:
            req.iv = iv
        enc = c.encrypt_with_options(req, RT)
        expect(enc.algorithm == algorithm and enc.padding_mode == pad
               and (enc.iv == iv if iv else not enc.iv), name)
        emit(name, True, blob_len=len(enc.ciphertext_blob))
        dec = c.decrypt_with_options(models.DecryptRequest(
            key_id=key, ciphertext_blob=enc.ciphertext_blob, iv=enc.iv or None,
            algorithm=algorithm, padding_mode=pad), RT)
        expect(dec.plaintext == data and dec.padding_mode == pad, "Decrypt" + name[7:])
        emit("Decrypt" + name[7:], True)

    # GenerateDataKey: plaintext + a ciphertext that Decrypt opens to it
    gdk = c.generate_data_key_with_options(
        models.GenerateDataKeyRequest(key_id=key, number_of_bytes=32, aad=aad), RT)
    expect(len(gdk.plaintext) == 32 and len(gdk.iv) == 12 and gdk.algorithm == "AES_GCM",
           "GenerateDataKey")
    emit("GenerateDataKey", True)
    dk = c.decrypt_with_options(models.DecryptRequest(
        key_id=key, ciphertext_blob=gdk.ciphertext_blob, iv=gdk.iv, algorithm=gdk.algorithm,
        aad=aad), RT)
    expect(dk.plaintext == gdk.plaintext, "Decrypt(data key)")
    emit("Decrypt(data key)", True)
    short = c.generate_data_key_with_options(
        models.GenerateDataKeyRequest(key_id=key, number_of_bytes=16), RT)
    expect(len(short.plaintext) == 16, "GenerateDataKey(16 bytes)")
    emit("GenerateDataKey(16 bytes)", True)
    refused("GenerateDataKey 1025 bytes refused", "InvalidParameter",
            lambda: c.generate_data_key_with_options(
                models.GenerateDataKeyRequest(key_id=key, number_of_bytes=1025), RT))

    # GenerateRandom: 1-1024 bytes
    seen = set()
    for n in (1, 32, 1024):
        r = c.generate_random_with_options(models.GenerateRandomRequest(length=n), RT)
        expect(len(r.random) == n, "GenerateRandom", length=n, got=len(r.random))
        seen.add(r.random)
    again = c.generate_random_with_options(models.GenerateRandomRequest(length=32), RT).random
    expect(again not in seen, "GenerateRandom", why="two 32-byte results are equal")
    emit("GenerateRandom", True, lengths=[1, 32, 1024])
    refused("GenerateRandom 1025 refused", "InvalidParameter",
            lambda: c.generate_random_with_options(models.GenerateRandomRequest(length=1025), RT))
    refused("GenerateRandom without Length refused", "MissingParameter",
            lambda: c.generate_random_with_options(models.GenerateRandomRequest(), RT))

    data_key_pairs(c, key, aad)

    if args.rsa_sign_key:
        sign_verify(c, args.rsa_sign_key, "RSA_2048")
    if args.ec_sign_key:
        sign_verify(c, args.ec_sign_key, "EC_P256")
    if args.rsa_encrypt_key:
        k = args.rsa_encrypt_key
        enc = c.encrypt_with_options(models.EncryptRequest(
            key_id=k, plaintext=pt, algorithm="RSAES_OAEP_SHA_256"), RT)
        expect(len(enc.ciphertext_blob) == 256 and not enc.iv, "Encrypt RSAES_OAEP_SHA_256")
        emit("Encrypt RSAES_OAEP_SHA_256", True)
        dec = c.decrypt_with_options(models.DecryptRequest(
            key_id=k, ciphertext_blob=enc.ciphertext_blob, algorithm="RSAES_OAEP_SHA_256"), RT)
        expect(dec.plaintext == pt, "Decrypt RSAES_OAEP_SHA_256")
        emit("Decrypt RSAES_OAEP_SHA_256", True)
        pem = c.get_public_key_with_options(models.GetPublicKeyRequest(key_id=k), RT).public_key
        pub = serialization.load_pem_public_key(pem.encode())
        local = pub.encrypt(pt, padding.OAEP(mgf=padding.MGF1(hashes.SHA1()),
                                             algorithm=hashes.SHA1(), label=None))
        dec = c.decrypt_with_options(models.DecryptRequest(
            key_id=k, ciphertext_blob=local, algorithm="RSAES_OAEP_SHA_1"), RT)
        expect(dec.plaintext == pt, "Decrypt(encrypted by cryptography)")
        emit("Decrypt(encrypted by cryptography)", True)
        refused("Sign with an ENCRYPT/DECRYPT key refused", "UnsupportedOperation",
                lambda: c.sign_with_options(models.SignRequest(
                    key_id=k, algorithm="RSA_PSS_SHA_256", message=pt), RT))
    if args.rsa_sign_key:
        refused("Encrypt with a SIGN/VERIFY key refused", "UnsupportedOperation",
                lambda: c.encrypt_with_options(models.EncryptRequest(
                    key_id=args.rsa_sign_key, plaintext=pt), RT))
        refused("GenerateDataKey with an asymmetric key refused",
                "Forbidden.OnlySymmetricKeySupported",
                lambda: c.generate_data_key_with_options(
                    models.GenerateDataKeyRequest(key_id=args.rsa_sign_key), RT))
    refused("Sign with a symmetric key refused", "UnsupportedOperation",
            lambda: c.sign_with_options(models.SignRequest(
                key_id=key, algorithm="RSA_PSS_SHA_256", message=pt), RT))
    refused("GetPublicKey of a symmetric key refused", "UnsupportedOperation",
            lambda: c.get_public_key_with_options(models.GetPublicKeyRequest(key_id=key), RT))
    refused("Encrypt with an unknown key refused", "Forbidden.KeyNotFound",
            lambda: c.encrypt_with_options(models.EncryptRequest(
                key_id="00000000-0000-4000-8000-000000000000", plaintext=pt), RT))

    if args.disabled_key:
        d = args.disabled_key
        refused("Encrypt with a disabled key refused", "Rejected.Disabled",
                lambda: c.encrypt_with_options(models.EncryptRequest(key_id=d, plaintext=pt), RT))
        refused("GenerateDataKey with a disabled key refused", "Rejected.Disabled",
                lambda: c.generate_data_key_with_options(
                    models.GenerateDataKeyRequest(key_id=d), RT))

    # an unregistered client key: the documented 404 Unauthorized
    unknown = json.loads(client_key)
    unknown["KeyId"] = unknown["KeyId"] + "-unregistered"
    stranger = Client(Config(protocol=protocol, endpoint=args.endpoint,
                             client_key_content=json.dumps(unknown), password=args.password))
    refused("unknown client key refused", "Unauthorized",
            lambda: stranger.generate_random_with_options(
                models.GenerateRandomRequest(length=8), RT))


def wrong_ca_refused(c, args):
    """Run first: the SDK's TLS context keeps every CA it has loaded, so a
    wrong CA is refused only before the right one has been used."""
    other = RuntimeOptions(autoretry=False, verify=args.wrong_ca)
    try:
        c.generate_random_with_options(models.GenerateRandomRequest(length=8), other)
    except Exception as e:  # the SDK's UnretryableException, from the handshake
        expect("CERTIFICATE_VERIFY_FAILED" in str(e), "wrong CA refused", error=str(e)[:300])
        emit("wrong CA refused", True, error=type(e).__name__)
    else:
        raise StepFailed(json.dumps({"step": "wrong CA refused", "got": "success"}))


def same_public(private, public_bytes, fmt):
    if fmt == "PEM":
        public = serialization.load_pem_public_key(public_bytes)
    else:
        public = serialization.load_der_public_key(public_bytes)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return private.public_key().public_bytes(*spki) == public.public_bytes(*spki)


def data_key_pairs(c, key, aad):
    for action, spec, fmt in (("GenerateDataKeyPair", "RSA_2048", "PEM"),
                              ("GenerateDataKeyPairWithoutPlaintext", "EC_P256", "DER"),
                              ("AdvanceGenerateDataKeyPair", "EC_P256", "PEM"),
                              ("AdvanceGenerateDataKeyPairWithoutPlaintext", "RSA_2048", "DER")):
        name = "%s %s %s" % (action, spec, fmt)
        snake = "".join("_" + ch.lower() if ch.isupper() else ch for ch in action).lstrip("_")
        req = getattr(models, action + "Request")(key_id=key, key_pair_spec=spec, key_format=fmt,
                                                 aad=aad)
        r = getattr(c, snake + "_with_options")(req, RT)
        expect(r.key_pair_spec == spec and r.private_key_ciphertext_blob and r.public_key
               and r.algorithm == "AES_GCM", name)
        if action.startswith("Advance"):
            expect(r.key_version_id, name, why="no KeyVersionId")
            opened = c.advance_decrypt_with_options(models.AdvanceDecryptRequest(
                ciphertext_blob=r.private_key_ciphertext_blob, aad=aad), RT).plaintext
        else:
            opened = c.decrypt_with_options(models.DecryptRequest(
                key_id=key, ciphertext_blob=r.private_key_ciphertext_blob, iv=r.iv,
                algorithm=r.algorithm, aad=aad), RT).plaintext
        if "WithoutPlaintext" not in action:
            expect(r.private_key_plaintext == opened, name, why="sealed private key differs")
        if fmt == "PEM":
            expect(opened.startswith(b"-----BEGIN PRIVATE KEY-----"), name)
            private = serialization.load_pem_private_key(opened, password=None)
        else:
            private = serialization.load_der_private_key(opened, password=None)
        want = rsa.RSAPrivateKey if spec.startswith("RSA") else ec.EllipticCurvePrivateKey
        expect(isinstance(private, want) and same_public(private, r.public_key, fmt), name,
               why="the private key does not match the public key or the spec")
        emit(name, True)


def sign_verify(c, key, spec):
    pem = c.get_public_key_with_options(models.GetPublicKeyRequest(key_id=key), RT).public_key
    pub = serialization.load_pem_public_key(pem.encode())
    if spec.startswith("RSA"):
        expect(isinstance(pub, rsa.RSAPublicKey) and pub.key_size == 2048,
               "GetPublicKey(%s)" % spec)
        cases = (("RSA_PSS_SHA_256", "RAW"), ("RSA_PKCS1_SHA_256", "DIGEST"))
    else:
        expect(isinstance(pub, ec.EllipticCurvePublicKey) and pub.curve.name == "secp256r1",
               "GetPublicKey(%s)" % spec)
        cases = (("ECDSA_SHA_256", "RAW"), ("ECDSA_SHA_256", "DIGEST"))
    emit("GetPublicKey(%s)" % spec, True)
    message = b"sealgate instance api signs this"
    digest = hashlib.sha256(message).digest()
    for alg, mtype in cases:
        name = "Sign %s %s" % (alg, mtype)
        sent = message if mtype == "RAW" else digest
        s = c.sign_with_options(models.SignRequest(key_id=key, algorithm=alg, message=sent,
                                                   message_type=mtype), RT)
        expect(s.algorithm == alg and s.message_type == mtype and s.signature, name)
        prehashed = utils.Prehashed(hashes.SHA256())
        if alg == "RSA_PSS_SHA_256":
            pub.verify(s.signature, digest, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                                        salt_length=32), prehashed)
        elif alg == "RSA_PKCS1_SHA_256":
            pub.verify(s.signature, digest, padding.PKCS1v15(), prehashed)
        else:
            pub.verify(s.signature, digest, ec.ECDSA(prehashed))
        emit(name + " (checked by cryptography)", True)
        v = c.verify_with_options(models.VerifyRequest(
            key_id=key, algorithm=alg, message=sent, message_type=mtype,
            signature=s.signature), RT)
        expect(v.value is True, "Verify %s %s" % (alg, mtype), value=v.value)
        emit("Verify %s %s" % (alg, mtype), True)
        tampered = bytes([sent[0] ^ 1]) + sent[1:]
        v = c.verify_with_options(models.VerifyRequest(
            key_id=key, algorithm=alg, message=tampered, message_type=mtype,
            signature=s.signature), RT)
        expect(v.value is False, "Verify tampered %s %s" % (alg, mtype), value=v.value)
        emit("Verify tampered %s %s" % (alg, mtype), True)
    refused("Sign with the wrong Algorithm refused", "InvalidParameter",
            lambda: c.sign_with_options(models.SignRequest(
                key_id=key, algorithm="RSA_PSS_SHA_256" if spec == "EC_P256" else "ECDSA_SHA_256",
                message=message), RT))
    refused("Sign DIGEST of 31 bytes refused", "InvalidParameter",
            lambda: c.sign_with_options(models.SignRequest(
                key_id=key, message=digest[:31], message_type="DIGEST"), RT))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("endpoint", help="HOST:PORT of sealgate's KMS instance API")
    p.add_argument("client_key_file", help="the SDK's client key JSON file")
    p.add_argument("password", help="the client key's PKCS#12 password")
    p.add_argument("key_id", help="a symmetric key (KeyId or alias/...)")
    p.add_argument("--ca", help="CA certificate (PEM) to verify the server with; HTTPS")
    p.add_argument("--wrong-ca", help="another CA, which must not verify the server")
    p.add_argument("--rsa-sign-key", help="an RSA_2048 SIGN/VERIFY key")
    p.add_argument("--ec-sign-key", help="an EC_P256 SIGN/VERIFY key")
    p.add_argument("--rsa-encrypt-key", help="an RSA_2048 ENCRYPT/DECRYPT key")
    p.add_argument("--disabled-key", help="a disabled symmetric key")
    p.add_argument("--rotated", action="store_true",
                   help="KEY_ID has been rotated: check Encrypt keeps its initial version")
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
