"""Captures what the official Tencent Cloud Python SDK puts on the wire, as
signing test vectors for the Rust verifier (src/kms/tencent/sign.rs).

Runs a throw-away HTTP listener on 127.0.0.1, points a KmsClient at it with a
fixed test credential, sends one Encrypt per signing mode (TC3 over POST and
GET; signature v1 HmacSHA1/HmacSHA256 over POST and GET), and prints each
captured request as one JSON object per line: method, path, query, headers,
body (as text), plus the credential used. The listener answers with a valid
success envelope so the SDK call completes.

Usage: target/sdk-venv/bin/python tests/sdk/capture_tencent_vectors.py > vectors.jsonl
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from tencentcloud.common import credential
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.kms.v20190118 import kms_client, models

SECRET_ID = "AKIDsealgateTEST0001"
SECRET_KEY = "sealgate-test-secret-key-0001"
captured = []


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
            "body": body.decode("utf-8"),
        })
        out = json.dumps({"Response": {"KeyId": "k1", "CiphertextBlob": "x",
                                       "RequestId": "00000000-0000-0000-0000-000000000000"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = _handle
    do_POST = _handle

    def log_message(self, *args):
        pass


def main():
    server = HTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cred = credential.Credential(SECRET_ID, SECRET_KEY)
    modes = [("TC3-HMAC-SHA256", "POST"), ("TC3-HMAC-SHA256", "GET"),
             ("HmacSHA256", "POST"), ("HmacSHA1", "GET")]
    for sign_method, req_method in modes:
        http = HttpProfile(endpoint="127.0.0.1:%d" % port, protocol="http", reqMethod=req_method)
        profile = ClientProfile(signMethod=sign_method, httpProfile=http)
        client = kms_client.KmsClient(cred, "ap-guangzhou", profile)
        req = models.EncryptRequest()
        req.KeyId = "k1"
        req.Plaintext = "aGVsbG8="
        req.EncryptionContext = '{"a":"b c"}'
        client.Encrypt(req)
        rec = captured[-1]
        rec.update({"sign_method": sign_method, "secret_id": SECRET_ID, "secret_key": SECRET_KEY})
        print(json.dumps(rec, sort_keys=True))
    server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
