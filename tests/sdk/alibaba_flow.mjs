// End-to-end check of sealgate's Alibaba KMS face (OpenAPI 2016-01-20) with
// Alibaba's official Node SDK `@alicloud/kms20160120` (pinned in
// tests/sdk/node/package.json; RPC style, signature v1 HMAC-SHA1, every
// parameter in the query of a POST).
//
// The flow of tests/sdk/alibaba_flow.py, plus the calls of the SDK's own
// README demo and other common ones:
//
//   DescribeRegions -> DescribeService -> CreateKey -> ListKeys -> DescribeKey
//   -> Encrypt (EncryptionContext) -> Decrypt -> Decrypt with another context
//      is refused (InvalidCiphertext)
//   -> UpdateKeyDescription (and an empty one clears it) -> DisableKey
//   -> Encrypt refused (Rejected.Disabled) -> EnableKey
//   -> GenerateDataKey -> Decrypt(data key) -> GenerateDataKeyWithoutPlaintext
//   -> CreateAlias -> ListAliasesByKeyId -> UpdateAlias (to another key)
//   -> ListAliasesByKeyId of both keys -> ListAliases -> DeleteAlias
//   -> CreateKeyVersion -> ListKeyVersions -> DescribeKeyVersion
//   -> Encrypt keeps the initial version -> UpdateRotationPolicy
//   -> ScheduleKeyDeletion -> CancelKeyDeletion
//   -> the new actions' errors (unknown key, unknown alias, missing KeyId)
//   -> asymmetric keys: RSA_2048 SIGN/VERIFY (GetPublicKey, AsymmetricSign
//      checked with node:crypto, AsymmetricVerify true / false) and RSA_2048
//      ENCRYPT/DECRYPT (AsymmetricEncrypt / AsymmetricDecrypt, and a blob made
//      by node:crypto with the published key) -> EC_SM2 refused
//   -> a wrong AccessKeySecret is refused (SignatureDoesNotMatch)
//
// Prints one JSON line per step ({"step", "ok", ...}); exits 1 at the first
// failure (2 for bad usage).
//
// Usage:
//   node alibaba_flow.mjs --sdk-dir DIR ENDPOINT ACCESS_KEY_ID ACCESS_KEY_SECRET [--region R]
// ENDPOINT is HOST:PORT of sealgate's KMS listener (reached over plain http);
// DIR is where tests/sdk/setup-node.sh installed the SDKs.

import { createRequire } from "node:module";
import crypto from "node:crypto";
import path from "node:path";
import { parseArgs } from "node:util";

class StepFailed extends Error {}

function emit(step, ok, extra = {}) {
  process.stdout.write(JSON.stringify({ step, ok, ...extra }) + "\n");
}

function check(step, cond, extra = {}) {
  if (!cond) {
    emit(step, false, extra);
    throw new StepFailed(step);
  }
  emit(step, true, extra);
}

// The SDK raises `${Code}Error` with the error body as `data`.
function codeOf(e) {
  return e?.data?.Code ?? String(e?.code ?? "").replace(/Error$/, "");
}

async function expectError(step, code, fn) {
  try {
    await fn();
  } catch (e) {
    const got = codeOf(e);
    check(step, got === code, { want: code, got, message: String(e?.message ?? e).slice(0, 300) });
    return;
  }
  emit(step, false, { want: code, got: "success" });
  throw new StepFailed(step);
}

const b64 = (buf) => Buffer.from(buf).toString("base64");

async function run(sdkDir, endpoint, id, secret, region) {
  const require = createRequire(path.join(path.resolve(sdkDir), "node_modules", "_"));
  const KMS = require("@alicloud/kms20160120");
  const Client = KMS.default;
  const clientFor = (s) =>
    new Client({ endpoint, accessKeyId: id, accessKeySecret: s, regionId: region, protocol: "http" });
  const c = clientFor(secret);

  // --- the SDK README's demo opens with these two
  const regions = await c.describeRegions(new KMS.DescribeRegionsRequest({}));
  const regionIds = (regions.regions?.region ?? []).map((r) => r.regionId);
  check("DescribeRegions", regionIds.length > 0 && regionIds.every((r) => typeof r === "string" && r), {
    regionIds,
  });

  const service = await c.describeService(new KMS.DescribeServiceRequest({}));
  const levels = (service.protectionLevels?.protectionLevel ?? []).map((p) => p.type);
  const specs = Object.fromEntries(
    (service.keySpecs?.keySpec ?? []).map((s) => [s.name, s.usages?.usage ?? []]),
  );
  check(
    "DescribeService",
    JSON.stringify(levels) === JSON.stringify(["SOFTWARE"]) &&
      JSON.stringify(specs["Aliyun_AES_256"]) === JSON.stringify(["ENCRYPT/DECRYPT"]) &&
      JSON.stringify(specs["RSA_2048"]) === JSON.stringify(["ENCRYPT/DECRYPT", "SIGN/VERIFY"]) &&
      JSON.stringify(specs["EC_P256"]) === JSON.stringify(["SIGN/VERIFY"]) &&
      !("EC_SM2" in specs),
    { levels, specs },
  );

  // --- a symmetric key's life
  const created = await c.createKey(
    new KMS.CreateKeyRequest({ description: "sealgate node flow", keyUsage: "ENCRYPT/DECRYPT", origin: "Aliyun_KMS" }),
  );
  const meta = created.keyMetadata;
  const keyId = meta.keyId;
  check("CreateKey", meta.keyState === "Enabled" && meta.keySpec === "Aliyun_AES_256", { keyId });
  const v1 = meta.primaryKeyVersion;

  const listed = await c.listKeys(new KMS.ListKeysRequest({ pageNumber: 1, pageSize: 100 }));
  check("ListKeys", listed.keys.key.some((k) => k.keyId === keyId) && listed.totalCount >= 1);

  const described = await c.describeKey(new KMS.DescribeKeyRequest({ keyId }));
  check("DescribeKey", described.keyMetadata.keyId === keyId && described.keyMetadata.description === "sealgate node flow");

  const ctx = JSON.stringify({ tenant: "acme", field: "ssn with space" });
  const plaintext = b64("hello sealgate from node");
  const enc = await c.encrypt(new KMS.EncryptRequest({ keyId, plaintext, encryptionContext: ctx }));
  check("Encrypt", enc.keyId === keyId && typeof enc.ciphertextBlob === "string" && enc.keyVersionId === v1);
  const dec = await c.decrypt(new KMS.DecryptRequest({ ciphertextBlob: enc.ciphertextBlob, encryptionContext: ctx }));
  check("Decrypt", dec.plaintext === plaintext && dec.keyId === keyId);
  await expectError("Decrypt with another EncryptionContext", "InvalidCiphertext", () =>
    c.decrypt(
      new KMS.DecryptRequest({ ciphertextBlob: enc.ciphertextBlob, encryptionContext: JSON.stringify({ tenant: "evil" }) }),
    ),
  );

  await c.updateKeyDescription(new KMS.UpdateKeyDescriptionRequest({ keyId, description: "rewritten by node" }));
  let d = (await c.describeKey(new KMS.DescribeKeyRequest({ keyId }))).keyMetadata;
  check("UpdateKeyDescription", d.description === "rewritten by node");
  await c.updateKeyDescription(new KMS.UpdateKeyDescriptionRequest({ keyId, description: "" }));
  d = (await c.describeKey(new KMS.DescribeKeyRequest({ keyId }))).keyMetadata;
  check("UpdateKeyDescription(empty clears it)", d.description === "");

  await c.disableKey(new KMS.DisableKeyRequest({ keyId }));
  await expectError("Encrypt refused while disabled", "Rejected.Disabled", () =>
    c.encrypt(new KMS.EncryptRequest({ keyId, plaintext })),
  );
  await c.enableKey(new KMS.EnableKeyRequest({ keyId }));
  d = (await c.describeKey(new KMS.DescribeKeyRequest({ keyId }))).keyMetadata;
  check("DisableKey and EnableKey", d.keyState === "Enabled");

  const gdk = await c.generateDataKey(new KMS.GenerateDataKeyRequest({ keyId, numberOfBytes: 32, encryptionContext: ctx }));
  const dk = await c.decrypt(new KMS.DecryptRequest({ ciphertextBlob: gdk.ciphertextBlob, encryptionContext: ctx }));
  check("GenerateDataKey", Buffer.from(gdk.plaintext, "base64").length === 32 && dk.plaintext === gdk.plaintext);
  const nop = await c.generateDataKeyWithoutPlaintext(
    new KMS.GenerateDataKeyWithoutPlaintextRequest({ keyId, keySpec: "AES_128" }),
  );
  const nopDk = await c.decrypt(new KMS.DecryptRequest({ ciphertextBlob: nop.ciphertextBlob }));
  check(
    "GenerateDataKeyWithoutPlaintext",
    nop.plaintext === undefined && Buffer.from(nopDk.plaintext, "base64").length === 16,
  );

  // --- aliases, the README demo's ListAliasesByKeyId included
  const other = (await c.createKey(new KMS.CreateKeyRequest({}))).keyMetadata.keyId;
  const alias = `alias/node-flow-${crypto.randomBytes(4).toString("hex")}`;
  await c.createAlias(new KMS.CreateAliasRequest({ keyId, aliasName: alias }));
  let byId = await c.listAliasesByKeyId(new KMS.ListAliasesByKeyIdRequest({ keyId, pageNumber: 1, pageSize: 100 }));
  check(
    "ListAliasesByKeyId",
    byId.totalCount === 1 &&
      byId.pageNumber === 1 &&
      byId.pageSize === 100 &&
      byId.aliases.alias.length === 1 &&
      byId.aliases.alias[0].aliasName === alias &&
      byId.aliases.alias[0].keyId === keyId &&
      byId.aliases.alias[0].aliasArn.endsWith(`:${alias}`),
    { aliases: byId.aliases.alias },
  );
  byId = await c.listAliasesByKeyId(new KMS.ListAliasesByKeyIdRequest({ keyId: alias }));
  check("ListAliasesByKeyId(by alias)", byId.totalCount === 1 && byId.aliases.alias[0].keyId === keyId);

  await c.updateAlias(new KMS.UpdateAliasRequest({ keyId: other, aliasName: alias }));
  const first = await c.listAliasesByKeyId(new KMS.ListAliasesByKeyIdRequest({ keyId }));
  const second = await c.listAliasesByKeyId(new KMS.ListAliasesByKeyIdRequest({ keyId: other }));
  check(
    "UpdateAlias then ListAliasesByKeyId",
    first.totalCount === 0 &&
      (first.aliases?.alias ?? []).length === 0 &&
      second.totalCount === 1 &&
      second.aliases.alias[0].aliasName === alias,
  );
  const all = await c.listAliases(new KMS.ListAliasesRequest({ pageNumber: 1, pageSize: 100 }));
  check("ListAliases", all.aliases.alias.some((a) => a.aliasName === alias && a.keyId === other));
  await c.deleteAlias(new KMS.DeleteAliasRequest({ aliasName: alias }));
  const gone = await c.listAliasesByKeyId(new KMS.ListAliasesByKeyIdRequest({ keyId: other }));
  check("DeleteAlias", gone.totalCount === 0);

  // --- the new actions' errors
  const unknownKey = "0b6f4a4e-3f7e-4b1c-9a51-2f0e8f1d2c3b";
  await expectError("ListAliasesByKeyId(unknown key)", "Forbidden.KeyNotFound", () =>
    c.listAliasesByKeyId(new KMS.ListAliasesByKeyIdRequest({ keyId: unknownKey })),
  );
  await expectError("ListAliasesByKeyId(unknown alias)", "Forbidden.AliasNotFound", () =>
    c.listAliasesByKeyId(new KMS.ListAliasesByKeyIdRequest({ keyId: alias })),
  );
  await expectError("ListAliasesByKeyId(no KeyId)", "MissingParameter", () =>
    c.listAliasesByKeyId(new KMS.ListAliasesByKeyIdRequest({})),
  );
  await expectError("UpdateKeyDescription(unknown key)", "Forbidden.KeyNotFound", () =>
    c.updateKeyDescription(new KMS.UpdateKeyDescriptionRequest({ keyId: unknownKey, description: "x" })),
  );
  await expectError("UpdateKeyDescription(no Description)", "MissingParameter", () =>
    c.updateKeyDescription(new KMS.UpdateKeyDescriptionRequest({ keyId })),
  );

  // --- versions and rotation
  const nv = (await c.createKeyVersion(new KMS.CreateKeyVersionRequest({ keyId }))).keyVersion;
  check("CreateKeyVersion", nv.keyVersionId && nv.keyVersionId !== v1, { keyVersionId: nv.keyVersionId });
  const lv = await c.listKeyVersions(new KMS.ListKeyVersionsRequest({ keyId, pageSize: 10 }));
  const ids = lv.keyVersions.keyVersion.map((v) => v.keyVersionId);
  check("ListKeyVersions", lv.totalCount === 2 && ids.includes(nv.keyVersionId) && ids.includes(v1), { ids });
  const dv = await c.describeKeyVersion(new KMS.DescribeKeyVersionRequest({ keyId, keyVersionId: nv.keyVersionId }));
  d = (await c.describeKey(new KMS.DescribeKeyRequest({ keyId }))).keyMetadata;
  check("DescribeKeyVersion", dv.keyVersion.keyVersionId === nv.keyVersionId && d.primaryKeyVersion === nv.keyVersionId);
  const enc2 = await c.encrypt(new KMS.EncryptRequest({ keyId, plaintext, encryptionContext: ctx }));
  check("Encrypt(initial version after rotation)", enc2.keyVersionId === v1);
  await c.updateRotationPolicy(
    new KMS.UpdateRotationPolicyRequest({ keyId, enableAutomaticRotation: true, rotationInterval: "30d" }),
  );
  d = (await c.describeKey(new KMS.DescribeKeyRequest({ keyId }))).keyMetadata;
  check("UpdateRotationPolicy", d.automaticRotation === "Enabled", { interval: d.rotationInterval });

  await c.scheduleKeyDeletion(new KMS.ScheduleKeyDeletionRequest({ keyId: other, pendingWindowInDays: 7 }));
  d = (await c.describeKey(new KMS.DescribeKeyRequest({ keyId: other }))).keyMetadata;
  const pending = d.keyState === "PendingDeletion" && d.deleteDate !== "";
  await c.cancelKeyDeletion(new KMS.CancelKeyDeletionRequest({ keyId: other }));
  d = (await c.describeKey(new KMS.DescribeKeyRequest({ keyId: other }))).keyMetadata;
  check("ScheduleKeyDeletion and CancelKeyDeletion", pending && d.keyState === "Enabled");

  // --- asymmetric keys
  const sm = (await c.createKey(new KMS.CreateKeyRequest({ keySpec: "RSA_2048", keyUsage: "SIGN/VERIFY" }))).keyMetadata;
  const [sk, skv] = [sm.keyId, sm.primaryKeyVersion];
  check("CreateKey(RSA_2048 SIGN/VERIFY)", sm.keySpec === "RSA_2048" && sm.keyUsage === "SIGN/VERIFY" && !!skv);
  const pk = await c.getPublicKey(new KMS.GetPublicKeyRequest({ keyId: sk, keyVersionId: skv }));
  const publicKey = crypto.createPublicKey(pk.publicKey);
  check(
    "GetPublicKey",
    pk.keyId === sk && pk.keyVersionId === skv && publicKey.asymmetricKeyDetails?.modulusLength === 2048,
  );
  const message = Buffer.from("pay 10 to bob");
  const digest = crypto.createHash("sha256").update(message).digest();
  const sig = await c.asymmetricSign(
    new KMS.AsymmetricSignRequest({ keyId: sk, keyVersionId: skv, algorithm: "RSA_PSS_SHA_256", digest: b64(digest) }),
  );
  check("AsymmetricSign", sig.keyId === sk && sig.keyVersionId === skv && !!sig.value);
  const pss = { key: publicKey, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 };
  const raw = Buffer.from(sig.value, "base64");
  check(
    "AsymmetricSign(verified by node:crypto)",
    crypto.verify("sha256", message, pss, raw) && !crypto.verify("sha256", Buffer.from("pay 99 to bob"), pss, raw),
  );
  const verify = (dg) =>
    c.asymmetricVerify(
      new KMS.AsymmetricVerifyRequest({
        keyId: sk,
        keyVersionId: skv,
        algorithm: "RSA_PSS_SHA_256",
        digest: b64(dg),
        value: sig.value,
      }),
    );
  check("AsymmetricVerify", (await verify(digest)).value === true);
  const otherDigest = crypto.createHash("sha256").update("pay 99 to bob").digest();
  check("AsymmetricVerify(tampered digest)", (await verify(otherDigest)).value === false);

  const em = (await c.createKey(new KMS.CreateKeyRequest({ keySpec: "RSA_2048", keyUsage: "ENCRYPT/DECRYPT" }))).keyMetadata;
  const [ek, ekv] = [em.keyId, em.primaryKeyVersion];
  check("CreateKey(RSA_2048 ENCRYPT/DECRYPT)", em.keyUsage === "ENCRYPT/DECRYPT");
  const secretPt = b64("a 32-byte data key for sealgate!");
  const aenc = await c.asymmetricEncrypt(
    new KMS.AsymmetricEncryptRequest({ keyId: ek, keyVersionId: ekv, algorithm: "RSAES_OAEP_SHA_256", plaintext: secretPt }),
  );
  check("AsymmetricEncrypt", aenc.keyId === ek && Buffer.from(aenc.ciphertextBlob, "base64").length === 256);
  const adec = await c.asymmetricDecrypt(
    new KMS.AsymmetricDecryptRequest({
      keyId: ek,
      keyVersionId: ekv,
      algorithm: "RSAES_OAEP_SHA_256",
      ciphertextBlob: aenc.ciphertextBlob,
    }),
  );
  check("AsymmetricDecrypt", adec.plaintext === secretPt && adec.keyId === ek);
  const epk = await c.getPublicKey(new KMS.GetPublicKeyRequest({ keyId: ek, keyVersionId: ekv }));
  const local = crypto.publicEncrypt(
    { key: epk.publicKey, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" },
    Buffer.from("sealed outside KMS"),
  );
  const ldec = await c.asymmetricDecrypt(
    new KMS.AsymmetricDecryptRequest({ keyId: ek, keyVersionId: ekv, algorithm: "RSAES_OAEP_SHA_256", ciphertextBlob: b64(local) }),
  );
  check("AsymmetricDecrypt(encrypted by node:crypto)", Buffer.from(ldec.plaintext, "base64").toString() === "sealed outside KMS");

  await expectError("CreateKey(EC_SM2)", "InvalidParameter.KeySpec", () =>
    c.createKey(new KMS.CreateKeyRequest({ keySpec: "EC_SM2", keyUsage: "SIGN/VERIFY" })),
  );
  await expectError("wrong AccessKeySecret", "SignatureDoesNotMatch", () =>
    clientFor(secret + "x").describeKey(new KMS.DescribeKeyRequest({ keyId })),
  );
}

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      "sdk-dir": { type: "string", default: process.env.SDK_NODE_DIR },
      region: { type: "string", default: "cn-hangzhou" },
    },
  });
  const [endpoint, id, secret] = positionals;
  if (!(values["sdk-dir"] && endpoint && id && secret)) {
    process.stderr.write("usage: alibaba_flow.mjs --sdk-dir DIR ENDPOINT ACCESS_KEY_ID ACCESS_KEY_SECRET [--region R]\n");
    return 2;
  }
  try {
    await run(values["sdk-dir"], endpoint, id, secret, values.region);
  } catch (e) {
    if (e instanceof StepFailed) return 1;
    // an SDK error where success was expected
    emit("failed", false, { error: e?.name, code: codeOf(e), message: String(e?.message ?? e).slice(0, 500) });
    return 1;
  }
  emit("done", true);
  return 0;
}

process.exitCode = await main();
