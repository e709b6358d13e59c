"""Captures what the official Alibaba Cloud Python SDKs put on the wire, as
signing test vectors for the Rust verifiers (src/kms/alibaba/sign.rs and
src/kms/alibaba/instance.rs).

Runs a throw-away HTTP listener on 127.0.0.1 and points each SDK at it with a
made-up test credential:

- alibabacloud-kms20160120 (ACS3-HMAC-SHA256): Encrypt with an
  EncryptionContext, Decrypt, GenerateDataKey;
- aliyun-python-sdk-kms + aliyun-python-sdk-core (RPC signature v1,
  HMAC-SHA1): AdvanceEncrypt (query parameters) and AdvanceDecrypt through
  the generic CommonRequest with form-body parameters;
- alibabacloud-dkms-gcs (KMS instance API, RSA_PKCS1_SHA_256 over a client
  key generated here and wrapped as the SDK expects: a JSON client key file
  with KeyId and PrivateKeyData = Base64 PKCS#12, plus its password).

Prints one JSON object per captured request: method, path, query, headers,
body (text for the JSON/RPC faces, Base64 for protobuf), plus the credential
(access key id and secret, or the client key's public key as PEM) and a tag
saying which SDK sent it. The listener answers with a plausible success body
so each SDK call completes.

Usage: target/sdk-venv/bin/python tests/sdk/alibaba_capture_vectors.py > vectors.jsonl
"""

import base64
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

ACCESS_KEY_ID = "LTAIsealgateTEST0001"
ACCESS_KEY_SECRET = "sealgate-test-secret-0001"
CLIENT_KEY_ID = "KAAP.sealgate-test-client-0001"
CLIENT_KEY_PASSWORD = "sealgate-test-password"

captured = []
reply = {"body": b"{}", "type": "application/json"}


class Handler(BaseHTTPRequestHandler):
    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        captured.append({
            "method": self.command,
            "path": path,
            "query": query,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body_bytes": body,
        })
        out = reply["body"]
        self.send_response(200)
        self.send_header("Content-Type", reply["type"])
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = _handle
    do_POST = _handle

    def log_message(self, *args):
        pass


def emit(sdk, action, extra):
    rec = captured[-1]
    body = rec.pop("body_bytes")
    if sdk == "dkms-gcs":
        rec["body_b64"] = base64.b64encode(body).decode()
    else:
        rec["body"] = body.decode("utf-8")
    rec.update({"sdk": sdk, "action": action})
    rec.update(extra)
    print(json.dumps(rec, sort_keys=True))


def capture_new_sdk(port):
    from alibabacloud_kms20160120.client import Client
    from alibabacloud_kms20160120 import models
    from alibabacloud_tea_openapi.models import Config

    config = Config(access_key_id=ACCESS_KEY_ID, access_key_secret=ACCESS_KEY_SECRET,
                    endpoint="127.0.0.1:%d" % port, protocol="http", region_id="cn-hangzhou")
    client = Client(config)
    cred = {"access_key_id": ACCESS_KEY_ID, "access_key_secret": ACCESS_KEY_SECRET}
    reply["body"] = json.dumps({"KeyId": "k1", "CiphertextBlob": "x", "KeyVersionId": "v1",
                                "RequestId": "r"}).encode()
    client.encrypt(models.EncryptRequest(key_id="k1", plaintext="aGVsbG8=",
                                         encryption_context={"a": "b c", "z": "+/="}))
    emit("alibabacloud-kms20160120", "Encrypt", cred)
    reply["body"] = json.dumps({"KeyId": "k1", "Plaintext": "aGVsbG8=", "KeyVersionId": "v1",
                                "RequestId": "r"}).encode()
    client.decrypt(models.DecryptRequest(ciphertext_blob="Y2lwaGVy+/==",
                                         encryption_context={"a": "b c", "z": "+/="}))
    emit("alibabacloud-kms20160120", "Decrypt", cred)
    reply["body"] = json.dumps({"KeyId": "k1", "Plaintext": "aGVsbG8=", "CiphertextBlob": "x",
                                "KeyVersionId": "v1", "RequestId": "r"}).encode()
    client.generate_data_key(models.GenerateDataKeyRequest(key_id="alias/sealgate-test",
                                                           number_of_bytes=32))
    emit("alibabacloud-kms20160120", "GenerateDataKey", cred)


def capture_legacy_sdk(port):
    from aliyunsdkcore.client import AcsClient
    from aliyunsdkcore.request import CommonRequest
    from aliyunsdkkms.request.v20160120.AdvanceEncryptRequest import AdvanceEncryptRequest

    client = AcsClient(ACCESS_KEY_ID, ACCESS_KEY_SECRET, "cn-hangzhou")
    cred = {"access_key_id": ACCESS_KEY_ID, "access_key_secret": ACCESS_KEY_SECRET}
    reply["body"] = json.dumps({"KeyId": "k1", "CiphertextBlob": "x", "RequestId": "r"}).encode()
    req = AdvanceEncryptRequest()
    req.set_endpoint("127.0.0.1:%d" % port)
    req.set_protocol_type("http")
    req.set_KeyId("k1")
    req.set_Plaintext("aGVsbG8gd29ybGQ=")
    req.set_Algorithm("AES_CBC")
    req.set_PaddingMode("PKCS7_PADDING")
    req.set_Iv(base64.b64encode(bytes(range(16))).decode())
    client.do_action_with_exception(req)
    emit("aliyun-python-sdk-kms", "AdvanceEncrypt", cred)

    req = CommonRequest()
    req.set_domain("127.0.0.1:%d" % port)
    req.set_protocol_type("http")
    req.set_method("POST")
    req.set_version("2016-01-20")
    req.set_action_name("AdvanceDecrypt")
    req.add_body_params("CiphertextBlob", "c2VhbGdhdGU+/w==")
    req.add_body_params("Aad", base64.b64encode(b"aad with space").decode())
    client.do_action_with_exception(req)
    emit("aliyun-python-sdk-core CommonRequest", "AdvanceDecrypt", cred)


def make_client_key():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import pkcs12

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    p12 = pkcs12.serialize_key_and_certificates(
        b"sealgate-test", key, None, None,
        serialization.BestAvailableEncryption(CLIENT_KEY_PASSWORD.encode()))
    client_key = json.dumps({"KeyId": CLIENT_KEY_ID,
                             "PrivateKeyData": base64.b64encode(p12).decode()})
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return client_key, public_pem


def capture_dkms_gcs(port):
    from openapi.models import Config
    from openapi_util.models import RuntimeOptions
    from openapi_util.protobuf import api_pb2
    from sdk.client import Client
    from sdk import models

    client_key, public_pem = make_client_key()
    client = Client(Config(protocol="http", endpoint="127.0.0.1:%d" % port,
                           client_key_content=client_key, password=CLIENT_KEY_PASSWORD))
    cred = {"client_key_id": CLIENT_KEY_ID, "client_public_key_pem": public_pem}
    reply["type"] = "application/x-protobuf"
    resp = api_pb2.AdvanceEncryptResponse(KeyId="k1", CiphertextBlob=b"c", Iv=b"i",
                                          RequestId="r", Algorithm="AES_GCM",
                                          KeyVersionId="v1")
    reply["body"] = resp.SerializeToString()
    client.advance_encrypt_with_options(
        models.AdvanceEncryptRequest(key_id="k1", plaintext=b"hello world", aad=b"aad"),
        RuntimeOptions(autoretry=False))
    emit("dkms-gcs", "AdvanceEncrypt", cred)
    resp = api_pb2.AdvanceDecryptResponse(KeyId="k1", Plaintext=b"hello world", RequestId="r",
                                          Algorithm="AES_GCM", KeyVersionId="v1")
    reply["body"] = resp.SerializeToString()
    client.advance_decrypt_with_options(
        models.AdvanceDecryptRequest(ciphertext_blob=b"\x00\x01blob", aad=b"aad"),
        RuntimeOptions(autoretry=False))
    emit("dkms-gcs", "AdvanceDecrypt", cred)
    resp = api_pb2.AdvanceGenerateDataKeyResponse(KeyId="k1", Iv=b"i", Plaintext=b"p" * 32,
                                                  CiphertextBlob=b"c", RequestId="r",
                                                  Algorithm="AES_GCM", KeyVersionId="v1")
    reply["body"] = resp.SerializeToString()
    client.advance_generate_data_key_with_options(
        models.AdvanceGenerateDataKeyRequest(key_id="k1", number_of_bytes=32),
        RuntimeOptions(autoretry=False))
    emit("dkms-gcs", "AdvanceGenerateDataKey", cred)


def main():
    server = HTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    capture_new_sdk(port)
    capture_legacy_sdk(port)
    capture_dkms_gcs(port)
    server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
