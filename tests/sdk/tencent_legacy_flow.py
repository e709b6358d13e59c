"""End-to-end check of sealgate's Tencent KMS legacy API 2.0 (`/v2/index.php`)
with the legacy official SDK, `qcloudapi-sdk-python` 2.0.15 (module
`QcloudApi`; see requirements.txt).

The SDK speaks HTTPS only and verifies the server certificate: point
SSL_CERT_FILE (or --ca) at the CA that signed sealgate's `[kms_tls]`
certificate. It signs every parameter (signature v1, HmacSHA1 by default,
HmacSHA256 on request) with a random Nonce and the current Timestamp.

Walks the key-management actions of the legacy API:

  CreateKey (keyUsage ENCRYPT/DECRYPT) -> GetKeyAttributes
  -> SetKeyAttributes (alias, description; a taken alias -> 4500)
  -> Encrypt/Decrypt -> DisableKey -> Encrypt refused (5000,
  ResourceUnavailable.CmkDisabled) -> EnableKey -> Encrypt works
  -> ListKey paged (limit 2) finds every key once
  -> ScheduleKeyDeletion (enabled: refused; disabled: PendingDelete)
  -> CancelKeyDeletion (Disabled again)
  -> parameter errors name the legacy parameters (alias, keyUsage 4490)
  -> a credential limited to another key, a revoked one and a wrong secret
     are refused; a signed DisableKey sent twice is refused the second time
     (4500, the legacy replay code) and changes nothing.

With --burst N it instead creates a key and sends N GetKeyAttributes back
to back, printing each answer's code (for the quota test: the legacy
actions share the per-credential quota of the API 3.0 action they map to).

Prints one JSON line per step ({"step", "ok", ...}) and exits 1 at the first
failure (2 for bad usage).

Usage:
  tencent_legacy_flow.py --endpoint HOST:PORT --secret-id ID --secret-key KEY
      [--limited-id ID --limited-key KEY] [--revoked-id ID --revoked-key KEY]
      [--ca FILE] [--burst N]
"""

import argparse
import base64
import json
import os
import ssl
import sys
import time
import urllib.request
import uuid

from QcloudApi.qcloudapi import QcloudApi


class StepFailed(Exception):
    pass


def emit(step, ok, **extra):
    rec = {"step": step, "ok": ok}
    rec.update(extra)
    print(json.dumps(rec, sort_keys=True), flush=True)


def service(endpoint, secret_id, secret_key, method="GET", sign="HmacSHA1"):
    return QcloudApi(
        "kms",
        {
            "Region": "gz",
            "secretId": secret_id,
            "secretKey": secret_key,
            "method": method,
            "SignatureMethod": sign,
            "endpoint": endpoint,
        },
    )


def call(svc, action, **params):
    raw = svc.call(action, params)
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    return json.loads(raw)


def check(step, cond, **extra):
    if not cond:
        emit(step, False, **extra)
        raise StepFailed(step)
    emit(step, True, **extra)


def ok(step, resp, **extra):
    """A success: code 0, codeDesc Success; returns the response."""
    good = resp.get("code") == 0 and resp.get("codeDesc") == "Success" and resp.get("message") == ""
    check(step, good and "requestId" in resp, response=resp if not good else None, **extra)
    return resp


def refused(step, resp, code, code_desc, names=None):
    """A legacy error: `code`, `codeDesc`, and a message quoting `names`."""
    good = resp.get("code") == code and resp.get("codeDesc") == code_desc
    message = resp.get("message", "")
    if names:
        good = good and all("`%s`" % n in message for n in names)
    check(step, good, response=resp)
    return resp


def attributes(svc, key_id):
    resp = ok("GetKeyAttributes", call(svc, "GetKeyAttributes", keyId=key_id))
    return resp["keyMetadata"]


def flow(args):
    svc = service(args.endpoint, args.secret_id, args.secret_key)
    post = service(args.endpoint, args.secret_id, args.secret_key, "POST", "HmacSHA256")
    tag = uuid.uuid4().hex[:8]
    alias = "legacy-" + tag

    # CreateKey: the legacy keyMetadata, usage ENCRYPT/DECRYPT, Enabled.
    before = int(time.time())
    resp = ok(
        "CreateKey",
        call(svc, "CreateKey", alias=alias, description="orders", keyUsage="ENCRYPT/DECRYPT"),
    )
    meta = resp["keyMetadata"]
    key_id = meta["keyId"]
    check(
        "CreateKey.keyMetadata",
        meta["alias"] == alias
        and meta["description"] == "orders"
        and meta["keyState"] == "Enabled"
        and meta["keyUsage"] == "ENCRYPT/DECRYPT"
        and meta["createTime"] >= before - 1
        and key_id,
        keyMetadata=meta,
    )

    # GetKeyAttributes (by KeyId and by alias).
    got = attributes(svc, key_id)
    check(
        "GetKeyAttributes.keyMetadata",
        got == dict(meta, type=1),
        keyMetadata=got,
    )
    check("GetKeyAttributes.byAlias", attributes(post, alias)["keyId"] == key_id)

    # SetKeyAttributes: alias and description; a taken alias is 4500.
    new_alias = "renamed-" + tag
    ok("SetKeyAttributes", call(svc, "SetKeyAttributes", keyId=key_id, alias=new_alias))
    ok(
        "SetKeyAttributes.description",
        call(post, "SetKeyAttributes", keyId=key_id, description="orders, renamed"),
    )
    got = attributes(svc, key_id)
    check(
        "SetKeyAttributes.applied",
        got["alias"] == new_alias and got["description"] == "orders, renamed",
        keyMetadata=got,
    )
    other = ok("CreateKey.second", call(post, "CreateKey", alias="other-" + tag))["keyMetadata"]
    refused(
        "SetKeyAttributes.aliasTaken",
        call(svc, "SetKeyAttributes", keyId=other["keyId"], alias=new_alias),
        4500,
        "InvalidParameterValue.AliasAlreadyExists",
    )
    check("SetKeyAttributes.aliasUnchanged", attributes(svc, other["keyId"])["alias"] == "other-" + tag)

    # Encrypt / Decrypt, then disable: Encrypt refused, enable: works again.
    plaintext = base64.b64encode(b"card 4111").decode()
    blob = ok("Encrypt", call(svc, "Encrypt", keyId=key_id, plaintext=plaintext))["ciphertextBlob"]
    back = ok("Decrypt", call(post, "Decrypt", ciphertextBlob=blob))
    check("Decrypt.plaintext", back["plaintext"] == plaintext and back["keyId"] == key_id)
    ok("DisableKey", call(svc, "DisableKey", keyId=key_id))
    check("DisableKey.state", attributes(svc, key_id)["keyState"] == "Disabled")
    refused(
        "Encrypt.disabled",
        call(svc, "Encrypt", keyId=key_id, plaintext=plaintext),
        5000,
        "ResourceUnavailable.CmkDisabled",
    )
    ok("EnableKey", call(post, "EnableKey", keyId=key_id))
    check("EnableKey.state", attributes(svc, key_id)["keyState"] == "Enabled")
    blob = ok("Encrypt.enabled", call(svc, "Encrypt", keyId=key_id, plaintext=plaintext))["ciphertextBlob"]
    check(
        "Decrypt.enabled",
        call(svc, "Decrypt", ciphertextBlob=blob).get("plaintext") == plaintext,
    )

    # ListKey in pages of 2: every key once, totalCount consistent.
    third = ok("CreateKey.third", call(svc, "CreateKey", alias="third-" + tag))["keyMetadata"]["keyId"]
    seen, offset, total = [], 0, None
    while True:
        page = ok("ListKey", call(svc, "ListKey", offset=offset, limit=2), offset=offset)
        if total is None:
            total = page["totalCount"]
        check(
            "ListKey.page",
            len(page["keys"]) <= 2 and page["totalCount"] == total,
            keys=page["keys"],
        )
        seen.extend(k["keyId"] for k in page["keys"])
        offset += 2
        if offset >= total:
            break
    check(
        "ListKey.all",
        len(seen) == len(set(seen)) == total
        and {key_id, other["keyId"], third} <= set(seen),
        total=total,
    )
    default_page = ok("ListKey.defaults", call(post, "ListKey"))
    check("ListKey.defaultLimit", len(default_page["keys"]) == min(10, total))
    refused("ListKey.badLimit", call(svc, "ListKey", limit=0), 4000, "InvalidParameter", ["limit"])

    # ScheduleKeyDeletion: an enabled key must be disabled first.
    refused(
        "ScheduleKeyDeletion.enabled",
        call(svc, "ScheduleKeyDeletion", keyId=third, pendingWindowInDays=7),
        5000,
        "ResourceUnavailable.CmkShouldBeDisabled",
    )
    ok("DisableKey.third", call(svc, "DisableKey", keyId=third))
    refused(
        "ScheduleKeyDeletion.window",
        call(svc, "ScheduleKeyDeletion", keyId=third, pendingWindowInDays=3),
        4000,
        "InvalidParameter.InvalidPendingWindowInDays",
        ["pendingWindowInDays"],
    )
    now = int(time.time())
    sched = ok(
        "ScheduleKeyDeletion",
        call(svc, "ScheduleKeyDeletion", keyId=third, pendingWindowInDays=7),
    )
    check(
        "ScheduleKeyDeletion.deletionDate",
        sched["keyId"] == third and abs(sched["deletionDate"] - (now + 7 * 86400)) < 600,
        response=sched,
    )
    check("ScheduleKeyDeletion.state", attributes(svc, third)["keyState"] == "PendingDelete")
    refused(
        "Encrypt.pendingDelete",
        call(svc, "Encrypt", keyId=third, plaintext=plaintext),
        5000,
        "ResourceUnavailable.CmkStateNotSupport",
    )
    cancel = ok("CancelKeyDeletion", call(post, "CancelKeyDeletion", keyId=third))
    check("CancelKeyDeletion.keyId", cancel["keyId"] == third)
    check("CancelKeyDeletion.state", attributes(svc, third)["keyState"] == "Disabled")
    refused(
        "CancelKeyDeletion.notPending",
        call(svc, "CancelKeyDeletion", keyId=third),
        5000,
        "ResourceUnavailable.CmkNotPendingDelete",
    )

    # Parameter errors name the parameters as the legacy client sent them.
    refused("CreateKey.noAlias", call(svc, "CreateKey", description="x"), 4000, "MissingParameter", ["alias"])
    refused(
        "CreateKey.keyUsage",
        call(svc, "CreateKey", alias="u-" + tag, keyUsage="ASYMMETRIC_SIGN_VERIFY_ECC"),
        4490,
        "InvalidParameterValue.InvalidKeyUsage",
        ["keyUsage"],
    )
    refused(
        "CreateKey.aliasTooLong",
        call(svc, "CreateKey", alias="a" * 33),
        4000,
        "InvalidParameterValue.InvalidAlias",
        ["alias"],
    )
    refused("GetKeyAttributes.noKeyId", call(svc, "GetKeyAttributes"), 4000, "MissingParameter", ["keyId"])
    refused(
        "GetKeyAttributes.unknown",
        call(svc, "GetKeyAttributes", keyId="no-such-key-" + tag),
        5000,
        "ResourceUnavailable.CmkNotFound",
    )
    refused("DescribeKey.notLegacy", call(svc, "DescribeKey", keyId=key_id), 4000, "InvalidAction")

    # Who may do what: a credential limited to another key, a revoked one,
    # a wrong secret.
    if args.limited_id:
        lim = service(args.endpoint, args.limited_id, args.limited_key)
        refused(
            "limited.GetKeyAttributes",
            call(lim, "GetKeyAttributes", keyId=key_id),
            4100,
            "AuthFailure.UnauthorizedOperation",
        )
        refused(
            "limited.DisableKey",
            call(lim, "DisableKey", keyId=key_id),
            4100,
            "AuthFailure.UnauthorizedOperation",
        )
        check("limited.DisableKey.unchanged", attributes(svc, key_id)["keyState"] == "Enabled")
        refused(
            "limited.CreateKey",
            call(lim, "CreateKey", alias="lim-" + tag),
            4100,
            "AuthFailure.UnauthorizedOperation",
        )
        listed = ok("limited.ListKey", call(lim, "ListKey", limit=100))
        check(
            "limited.ListKey.onlyItsKeys",
            key_id not in {k["keyId"] for k in listed["keys"]},
            keys=listed["keys"],
        )
    if args.revoked_id:
        rev = service(args.endpoint, args.revoked_id, args.revoked_key)
        refused(
            "revoked.GetKeyAttributes",
            call(rev, "GetKeyAttributes", keyId=key_id),
            4100,
            "AuthFailure.SignatureFailure",
        )
        refused(
            "revoked.DisableKey",
            call(rev, "DisableKey", keyId=key_id),
            4100,
            "AuthFailure.SignatureFailure",
        )
        check("revoked.DisableKey.unchanged", attributes(svc, key_id)["keyState"] == "Enabled")
    wrong = service(args.endpoint, args.secret_id, args.secret_key + "x")
    refused("wrongSecret.ListKey", call(wrong, "ListKey"), 4100, "AuthFailure.SignatureFailure")

    # Replay: the SDK signs a DisableKey URL; sent twice, the second is 4500.
    url = svc.generateUrl("DisableKey", {"keyId": other["keyId"]})
    ctx = ssl.create_default_context()

    def fetch():
        with urllib.request.urlopen(url, context=ctx, timeout=30) as r:
            return json.loads(r.read().decode("utf-8"))

    ok("replay.first", fetch())
    check("replay.first.applied", attributes(svc, other["keyId"])["keyState"] == "Disabled")
    ok("EnableKey.other", call(svc, "EnableKey", keyId=other["keyId"]))
    refused("replay.second", fetch(), 4500, "AuthFailure.SignatureFailure")
    check("replay.second.changedNothing", attributes(svc, other["keyId"])["keyState"] == "Enabled")
    emit("done", True, key_id=key_id)


def burst(args):
    svc = service(args.endpoint, args.secret_id, args.secret_key)
    key_id = ok("CreateKey", call(svc, "CreateKey", alias="burst-" + uuid.uuid4().hex[:8]))[
        "keyMetadata"
    ]["keyId"]
    codes = [call(svc, "GetKeyAttributes", keyId=key_id) for _ in range(args.burst)]
    emit(
        "burst",
        True,
        codes=[[r.get("code"), r.get("codeDesc")] for r in codes],
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--secret-id", required=True)
    ap.add_argument("--secret-key", required=True)
    ap.add_argument("--limited-id")
    ap.add_argument("--limited-key")
    ap.add_argument("--revoked-id")
    ap.add_argument("--revoked-key")
    ap.add_argument("--ca")
    ap.add_argument("--burst", type=int)
    args = ap.parse_args()
    if args.ca:
        os.environ["SSL_CERT_FILE"] = args.ca
    try:
        if args.burst:
            burst(args)
        else:
            flow(args)
    except StepFailed:
        sys.exit(1)


if __name__ == "__main__":
    main()
