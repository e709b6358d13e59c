"""End-to-end check of sealgate's Infisical KMS face with the official SDK.

Drives `infisicalsdk` (see requirements.txt) against a running sealgate and
walks the life of a key:

  universal-auth login -> create key -> encrypt -> decrypt
  -> get by id and by name -> list with paging, ordering and search
  -> rename -> update to disabled -> encrypt refused (400 "Key is disabled")
  -> enable -> delete -> the key is gone (404) and its name is free again
  -> a wrong clientSecret is refused (401), a bogus token too (403)

Prints one JSON line per step ({"step", "ok", ...}) and exits 1 at the first
failure (2 for bad usage).

Usage:
  infisical_flow.py [--host http://HOST:PORT] [--client-id ID] [--client-secret S]
Defaults come from SEALGATE_INFISICAL_HOST, INFISICAL_CLIENT_ID and
INFISICAL_CLIENT_SECRET. The SDK takes any URL as host: plain http works.
"""

import argparse
import base64
import json
import os
import sys
import uuid

from infisical_sdk import InfisicalSDKClient, SymmetricEncryption
from infisical_sdk.api_types import KmsKeysOrderBy, OrderDirection
from infisical_sdk.infisical_requests import APIError


class StepFailed(Exception):
    pass


def emit(step, ok, **extra):
    rec = {"step": step, "ok": ok}
    rec.update(extra)
    print(json.dumps(rec, sort_keys=True), flush=True)


def check(step, cond, **extra):
    if not cond:
        emit(step, False, **extra)
        raise StepFailed(step)
    emit(step, True, **extra)


def expect_api_error(step, status, fn, contains=None):
    try:
        fn()
    except APIError as e:
        ok = e.status_code == status and (contains is None or contains in str(e))
        check(step, ok, status=e.status_code, error=str(e))
        return e
    emit(step, False, error="no error raised")
    raise StepFailed(step)


def run(host, client_id, client_secret):
    client = InfisicalSDKClient(host=host, cache_ttl=None)
    login = client.auth.universal_auth.login(client_id=client_id, client_secret=client_secret)
    check("login", login.tokenType == "Bearer" and len(login.accessToken) > 0 and login.expiresIn > 0,
          expiresIn=login.expiresIn, accessTokenMaxTTL=login.accessTokenMaxTTL)

    project = str(uuid.uuid4())
    key = client.kms.create_key(name="flow-a", project_id=project,
                                encryption_algorithm=SymmetricEncryption.AES_GCM_256,
                                description="made by infisical_flow.py")
    check("create_key", key.name == "flow-a" and key.projectId == project and not key.isDisabled
          and key.version == 1 and key.encryptionAlgorithm == "aes-256-gcm"
          and key.description == "made by infisical_flow.py", key_id=key.id)

    secret = b"hello infisical \x00\xff"
    ct = client.kms.encrypt_data(key_id=key.id, base64EncodedPlaintext=base64.b64encode(secret).decode())
    check("encrypt", isinstance(ct, str) and base64.b64decode(ct) != secret)
    pt = client.kms.decrypt_data(key_id=key.id, ciphertext=ct)
    check("decrypt", base64.b64decode(pt) == secret)

    by_id = client.kms.get_key_by_id(key_id=key.id)
    check("get_key_by_id", by_id.id == key.id and by_id.name == "flow-a" and by_id.orgId == key.orgId)
    by_name = client.kms.get_key_by_name(key_name="flow-a", project_id=project)
    check("get_key_by_name", by_name.id == key.id)

    for name in ["flow-b", "flow-c", "other-d"]:
        client.kms.create_key(name=name, project_id=project,
                              encryption_algorithm=SymmetricEncryption.AES_GCM_256)
    # the same name in another project is another key
    elsewhere = client.kms.create_key(name="flow-a", project_id=str(uuid.uuid4()),
                                      encryption_algorithm=SymmetricEncryption.AES_GCM_256)
    check("same_name_other_project", elsewhere.id != key.id)

    page1 = client.kms.list_keys(project_id=project, offset=0, limit=2)
    page2 = client.kms.list_keys(project_id=project, offset=2, limit=2)
    names = [k.name for k in page1.keys] + [k.name for k in page2.keys]
    check("list_paging", page1.totalCount == 4 and page2.totalCount == 4
          and names == ["flow-a", "flow-b", "flow-c", "other-d"], names=names)
    desc = client.kms.list_keys(project_id=project, limit=1,
                                order_by=KmsKeysOrderBy.NAME, order_direction=OrderDirection.DESC)
    check("list_desc", [k.name for k in desc.keys] == ["other-d"] and desc.totalCount == 4)
    found = client.kms.list_keys(project_id=project, search="flow")
    check("list_search", sorted(k.name for k in found.keys) == ["flow-a", "flow-b", "flow-c"]
          and found.totalCount == 3)

    renamed = client.kms.update_key(key_id=key.id, name="flow-z", description="renamed")
    check("rename", renamed.name == "flow-z" and renamed.description == "renamed")
    expect_api_error("old_name_gone", 404, lambda: client.kms.get_key_by_name("flow-a", project))
    expect_api_error("rename_to_taken_name", 400,
                     lambda: client.kms.update_key(key_id=key.id, name="flow-b"), "already exists")

    disabled = client.kms.update_key(key_id=key.id, is_disabled=True)
    check("disable", disabled.isDisabled is True)
    expect_api_error("encrypt_refused_when_disabled", 400,
                     lambda: client.kms.encrypt_data(key.id, base64.b64encode(b"x").decode()),
                     "Key is disabled")
    enabled = client.kms.update_key(key_id=key.id, is_disabled=False)
    check("enable", enabled.isDisabled is False)
    pt = client.kms.decrypt_data(key_id=key.id, ciphertext=ct)
    check("decrypt_after_enable", base64.b64decode(pt) == secret)

    deleted = client.kms.delete_key(key_id=key.id)
    check("delete", deleted.id == key.id)
    expect_api_error("deleted_key_gone", 404, lambda: client.kms.get_key_by_id(key.id))
    expect_api_error("deleted_key_no_decrypt", 404, lambda: client.kms.decrypt_data(key.id, ct))
    again = client.kms.create_key(name="flow-z", project_id=project,
                                  encryption_algorithm=SymmetricEncryption.AES_GCM_256)
    check("name_reusable_after_delete", again.id != key.id and again.name == "flow-z")

    # a sign-verify algorithm for an encrypt-decrypt key (the SDK sends no keyUsage)
    expect_api_error("asymmetric_algorithm_without_usage", 422,
                     lambda: client.kms.create_key(name="flow-rsa", project_id=project,
                                                   encryption_algorithm="RSA_4096"),
                     "valid symmetric encryption algorithm")

    bad = InfisicalSDKClient(host=host, cache_ttl=None)
    expect_api_error("wrong_secret", 401,
                     lambda: bad.auth.universal_auth.login(client_id=client_id, client_secret="x" * 40),
                     "Invalid credentials")
    bogus = InfisicalSDKClient(host=host, token="bogus-token", cache_ttl=None)
    expect_api_error("bogus_token", 403, lambda: bogus.kms.list_keys(project_id=project))


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
