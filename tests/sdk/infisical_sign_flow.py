"""Sign-verify and aes-128-gcm keys of sealgate's Infisical KMS face, from
the official SDK's side.

`infisicalsdk` 1.0.17 has no methods for sign-verify keys (its `KMS` class
has create/get/list/update/delete/encrypt/decrypt only, and `create_key`
sends no `keyUsage`). So this script drives those routes through the SDK's
own authenticated transport (`client.api.get/post`, the requests session
the SDK's methods use, with the token its universal-auth login set), and
parses key objects with the SDK's models (`SingleKmsKeyResponse`,
`KmsKey`), then checks every signature independently with the
`cryptography` package (installed with the pinned Alibaba SDKs of
requirements.txt) against the public key the face returns:

  login -> create RSA_4096 and ECC_NIST_P256 sign-verify keys (SDK models)
  -> get_key_by_id / list_keys parse them -> signing algorithms
  -> public keys (DER SPKI) -> sign with every listed algorithm, verify
  each signature with `cryptography` and through /verify
  -> a tampered message is signatureValid false -> sign a digest
  -> aes-128-gcm key through create_key -> encrypt / decrypt
  -> the wrong kind of key for a route is 400

Prints one JSON line per step ({"step", "ok", ...}) and exits 1 at the first
failure (2 for bad usage).

Usage:
  infisical_sign_flow.py [--host http://HOST:PORT] [--client-id ID] [--client-secret S]
"""

import argparse
import base64
import hashlib
import json
import os
import sys
import uuid

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.serialization import load_der_public_key
from infisical_sdk import InfisicalSDKClient, SymmetricEncryption
from infisical_sdk.api_types import SingleKmsKeyResponse

# the step reporting of the key life-cycle flow (same directory)
from infisical_flow import StepFailed, check, emit, expect_api_error



HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


def hash_of(alg):
    return HASHES[alg.rsplit("_", 1)[1]]()


def independently_valid(public_key, alg, message, signature):
    """Checks a signature with `cryptography` alone (no sealgate code)."""
    h = hash_of(alg)
    try:
        if alg.startswith("RSASSA_PSS"):
            # Infisical's PSS: MGF1 with the same hash, salt = digest length
            public_key.verify(signature, message,
                              padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size), h)
        elif alg.startswith("RSASSA_PKCS1_V1_5"):
            public_key.verify(signature, message, padding.PKCS1v15(), h)
        else:
            public_key.verify(signature, message, ec.ECDSA(h))  # DER (r, s)
        return True
    except InvalidSignature:
        return False


def run(host, client_id, client_secret):
    client = InfisicalSDKClient(host=host, cache_ttl=None)
    login = client.auth.universal_auth.login(client_id=client_id, client_secret=client_secret)
    check("login", login.tokenType == "Bearer")
    api = client.api  # the SDK's authenticated transport
    project = str(uuid.uuid4())

    keys = {}
    for name, key_alg in [("sig-rsa", "RSA_4096"), ("sig-ecc", "ECC_NIST_P256")]:
        key = api.post(path="/api/v1/kms/keys", model=SingleKmsKeyResponse,
                       json={"projectId": project, "name": name, "keyUsage": "sign-verify",
                             "encryptionAlgorithm": key_alg}).data.key
        check(f"create_{key_alg}", key.name == name and key.encryptionAlgorithm == key_alg
              and key.version == 1 and not key.isDisabled, key_id=key.id)
        keys[key_alg] = key

    by_id = client.kms.get_key_by_id(key_id=keys["RSA_4096"].id)
    check("get_key_by_id_parses", by_id.encryptionAlgorithm == "RSA_4096")
    listed = client.kms.list_keys(project_id=project)
    check("list_keys_parses", sorted(k.encryptionAlgorithm for k in listed.keys)
          == ["ECC_NIST_P256", "RSA_4096"])

    want_algs = {
        "RSA_4096": ["RSASSA_PSS_SHA_512", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_256",
                     "RSASSA_PKCS1_V1_5_SHA_512", "RSASSA_PKCS1_V1_5_SHA_384",
                     "RSASSA_PKCS1_V1_5_SHA_256"],
        "ECC_NIST_P256": ["ECDSA_SHA_256"],
    }
    message = b"release v1.2.3 \x00\xff"
    for key_alg, key in keys.items():
        algs = api.get(path=f"/api/v1/kms/keys/{key.id}/signing-algorithms",
                       model=dict).data["signingAlgorithms"]
        check(f"signing_algorithms_{key_alg}", algs == want_algs[key_alg], algs=algs)

        der = base64.b64decode(api.get(path=f"/api/v1/kms/keys/{key.id}/public-key",
                                       model=dict).data["publicKey"])
        public_key = load_der_public_key(der)
        if key_alg == "RSA_4096":
            good = isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size == 4096
        else:
            good = isinstance(public_key, ec.EllipticCurvePublicKey) \
                and public_key.curve.name == "secp256r1"
        check(f"public_key_{key_alg}", good)

        for alg in algs:
            out = api.post(path=f"/api/v1/kms/keys/{key.id}/sign", model=dict,
                           json={"signingAlgorithm": alg,
                                 "data": base64.b64encode(message).decode()}).data
            sig = base64.b64decode(out["signature"])
            check(f"sign_{alg}", out["keyId"] == key.id and out["signingAlgorithm"] == alg)
            check(f"independent_verify_{alg}", independently_valid(public_key, alg, message, sig))
            check(f"independent_rejects_tampered_{alg}",
                  not independently_valid(public_key, alg, message + b"!", sig))
            for data, want in [(message, True), (message + b"!", False)]:
                out = api.post(path=f"/api/v1/kms/keys/{key.id}/verify", model=dict,
                               json={"signingAlgorithm": alg,
                                     "data": base64.b64encode(data).decode(),
                                     "signature": base64.b64encode(sig).decode()}).data
                check(f"verify_{alg}_{want}", out["signatureValid"] is want
                      and out["keyId"] == key.id and out["signingAlgorithm"] == alg)

    # a digest signed by the face verifies as a signature over the message
    digest = hashlib.sha256(message).digest()
    for key_alg, alg in [("RSA_4096", "RSASSA_PKCS1_V1_5_SHA_256"),
                         ("ECC_NIST_P256", "ECDSA_SHA_256")]:
        key = keys[key_alg]
        out = api.post(path=f"/api/v1/kms/keys/{key.id}/sign", model=dict,
                       json={"signingAlgorithm": alg, "isDigest": True,
                             "data": base64.b64encode(digest).decode()}).data
        sig = base64.b64decode(out["signature"])
        der = base64.b64decode(api.get(path=f"/api/v1/kms/keys/{key.id}/public-key",
                                       model=dict).data["publicKey"])
        public_key = load_der_public_key(der)
        ok = independently_valid(public_key, alg, message, sig)
        if key_alg == "ECC_NIST_P256":
            # and through cryptography's prehashed path
            public_key.verify(sig, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        check(f"sign_digest_{alg}", ok)

    expect_api_error("pss_digest_refused", 400,
                     lambda: api.post(path=f"/api/v1/kms/keys/{keys['RSA_4096'].id}/sign",
                                      model=dict,
                                      json={"signingAlgorithm": "RSASSA_PSS_SHA_256",
                                            "isDigest": True,
                                            "data": base64.b64encode(digest).decode()}),
                     "RSA PSS does not support digested input")

    aes128 = client.kms.create_key(name="enc-128", project_id=project,
                                   encryption_algorithm=SymmetricEncryption.AES_GCM_128)
    check("create_aes_128", aes128.encryptionAlgorithm == "aes-128-gcm")
    secret = b"short-key secret"
    ct = client.kms.encrypt_data(key_id=aes128.id,
                                 base64EncodedPlaintext=base64.b64encode(secret).decode())
    pt = client.kms.decrypt_data(key_id=aes128.id, ciphertext=ct)
    check("aes_128_round_trip", base64.b64decode(pt) == secret)

    expect_api_error("sign_with_encrypt_key", 400,
                     lambda: api.post(path=f"/api/v1/kms/keys/{aes128.id}/sign", model=dict,
                                      json={"signingAlgorithm": "ECDSA_SHA_256", "data": "aGk="}),
                     "Unsupported key type, expected sign-verify but got encrypt-decrypt")
    expect_api_error("encrypt_with_sign_key", 400,
                     lambda: client.kms.encrypt_data(keys["RSA_4096"].id, "aGk="),
                     "Unsupported key type, expected encrypt-decrypt but got sign-verify")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default=os.environ.get("SEALGATE_INFISICAL_HOST"))
    ap.add_argument("--client-id", default=os.environ.get("INFISICAL_CLIENT_ID"))
    ap.add_argument("--client-secret", default=os.environ.get("INFISICAL_CLIENT_SECRET"))
    args = ap.parse_args()
    if not (args.host and args.client_id and args.client_secret):
        print("need --host, --client-id and --client-secret (or their env vars)", file=sys.stderr)
        return 2
    try:
        run(args.host, args.client_id, args.client_secret)
    except StepFailed:
        return 1
    except Exception as e:  # an SDK-side failure (e.g. a missing key field) is a failure too
        emit("unexpected", False, error=f"{type(e).__name__}: {e}")
        return 1
    emit("done", True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
