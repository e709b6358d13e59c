// End-to-end check of sealgate's Tencent KMS face with Tencent Cloud's
// official Node.js SDK (`tencentcloud-sdk-nodejs-common`, installed pinned by
// tests/sdk/setup-node-tencent.sh; the npm registry has no separate KMS
// package, so this is the client a Node.js KMS caller uses):
//
//   CreateKey -> Encrypt -> Decrypt -> GenerateDataKey -> Decrypt(data key blob)
//   -> DescribeKey -> ListKeys -> DisableKey -> Encrypt refused
//   (ResourceUnavailable.CmkDisabled) -> EnableKey -> Encrypt again
//   -> a wrong SecretKey is refused (AuthFailure.SignatureFailure)
//   -> the same SDK signing with HmacSHA256 (signature v1) lists the keys.
//
// The endpoint normally carries a port other than 80/443: the SDK then sends
// `Host: h:port` but signs `host:h` in TC3, which the face must accept.
//
// Prints one JSON line per step ({"step", "ok", ...}) and exits 1 at the
// first failure (2 for bad usage).
//
// Usage:
//   node tencent_flow.mjs --sdk-dir DIR --endpoint HOST:PORT
//                         --secret-id ID --secret-key KEY [--region R]
// (DIR is the install prefix tests/sdk/setup-node-tencent.sh prints.)

import { createRequire } from "node:module";
import { join } from "node:path";
import { randomUUID } from "node:crypto";

function args(argv) {
  const out = { region: "ap-guangzhou" };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i];
    const v = argv[i + 1];
    if (!k.startsWith("--") || v === undefined) {
      console.error(`bad argument ${k}`);
      process.exit(2);
    }
    out[k.slice(2).replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = v;
  }
  for (const need of ["sdkDir", "endpoint", "secretId", "secretKey"]) {
    if (!out[need]) {
      console.error(`missing --${need.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase())}`);
      process.exit(2);
    }
  }
  return out;
}

const opts = args(process.argv.slice(2));
const require = createRequire(join(opts.sdkDir, "package.json"));
const { CommonClient } = require("tencentcloud-sdk-nodejs-common");

function client(secretKey, signMethod) {
  const profile = {
    httpProfile: { endpoint: opts.endpoint, protocol: "http://", reqTimeout: 30 },
  };
  if (signMethod) profile.signMethod = signMethod;
  return new CommonClient(opts.endpoint, "2019-01-18", {
    credential: { secretId: opts.secretId, secretKey },
    region: opts.region,
    profile,
  });
}

function emit(step, ok, extra = {}) {
  console.log(JSON.stringify({ step, ok, ...extra }));
}

class StepFailed extends Error {}

async function step(name, fn) {
  try {
    const extra = (await fn()) || {};
    emit(name, true, extra);
    return extra;
  } catch (e) {
    emit(name, false, { error: String(e && e.message), code: e && e.code });
    throw new StepFailed(name);
  }
}

function check(cond, why) {
  if (!cond) throw new Error(why);
}

/** Expects `call` to fail with the Tencent error `code`. */
async function refused(call, code) {
  try {
    await call();
  } catch (e) {
    check(e.code === code, `expected ${code}, got ${e.code}: ${e.message}`);
    return { code: e.code };
  }
  throw new Error(`expected ${code}, but the call succeeded`);
}

// sealgate accepts a signed request once (replay protection), and TC3 signs
// only the body, Host, Content-Type and the second, not the action: a call
// with the same body as one sent in the same second (DescribeKey then
// DisableKey of one key) carries the same signature and would be refused, so
// wait for a new second first. The SDK stamps the request between the clock
// reads around the call, so the second after the later read is a new one.
const lastSent = new Map();
const nowSecs = () => Math.floor(Date.now() / 1000);
function paced(c, tag) {
  return {
    async request(action, params) {
      const key = `${tag} ${JSON.stringify(params)}`;
      while (nowSecs() <= (lastSent.get(key) ?? -1)) {
        await new Promise((r) => setTimeout(r, 50));
      }
      try {
        return await c.request(action, params);
      } finally {
        lastSent.set(key, nowSecs());
      }
    },
  };
}

const kms = paced(client(opts.secretKey), "tc3");
const b64 = (s) => Buffer.from(s).toString("base64");

async function main() {
  const alias = `node-${randomUUID().slice(0, 8)}`;
  const { key_id: keyId } = await step("CreateKey", async () => {
    const r = await kms.request("CreateKey", { Alias: alias, Description: "node sdk" });
    check(r.KeyId && r.KeyState === "Enabled", JSON.stringify(r));
    return { key_id: r.KeyId };
  });

  const plain = b64("hello from node");
  const ctx = JSON.stringify({ app: "node" });
  const { blob } = await step("Encrypt", async () => {
    const r = await kms.request("Encrypt", { KeyId: keyId, Plaintext: plain, EncryptionContext: ctx });
    check(r.CiphertextBlob && r.KeyId === keyId, JSON.stringify(r));
    return { blob: r.CiphertextBlob };
  });
  await step("Decrypt", async () => {
    const r = await kms.request("Decrypt", { CiphertextBlob: blob, EncryptionContext: ctx });
    check(r.Plaintext === plain, `plaintext ${r.Plaintext}`);
  });

  const { dk_blob: dkBlob, dk } = await step("GenerateDataKey", async () => {
    const r = await kms.request("GenerateDataKey", { KeyId: keyId, KeySpec: "AES_256" });
    check(Buffer.from(r.Plaintext, "base64").length === 32, "data key is not 32 bytes");
    return { dk_blob: r.CiphertextBlob, dk: r.Plaintext };
  });
  await step("Decrypt data key", async () => {
    const r = await kms.request("Decrypt", { CiphertextBlob: dkBlob });
    check(r.Plaintext === dk, "data key does not round-trip");
  });

  await step("DescribeKey", async () => {
    const r = await kms.request("DescribeKey", { KeyId: keyId });
    check(r.KeyMetadata.KeyId === keyId && r.KeyMetadata.Alias === alias, JSON.stringify(r));
    check(r.KeyMetadata.KeyState === "Enabled", r.KeyMetadata.KeyState);
  });
  await step("ListKeys", async () => {
    const r = await kms.request("ListKeys", { Limit: 200 });
    check(r.Keys.some((k) => k.KeyId === keyId), "the new key is not listed");
    return { total: r.TotalCount };
  });

  await step("DisableKey", async () => {
    await kms.request("DisableKey", { KeyId: keyId });
    const r = await kms.request("DescribeKey", { KeyId: keyId });
    check(r.KeyMetadata.KeyState === "Disabled", r.KeyMetadata.KeyState);
  });
  await step("Encrypt while disabled", () =>
    refused(() => kms.request("Encrypt", { KeyId: keyId, Plaintext: plain }), "ResourceUnavailable.CmkDisabled"),
  );
  await step("EnableKey", async () => {
    await kms.request("EnableKey", { KeyId: keyId });
    const r = await kms.request("Encrypt", { KeyId: keyId, Plaintext: plain });
    check(r.CiphertextBlob, "Encrypt after EnableKey failed");
  });

  await step("Wrong SecretKey", () =>
    refused(() => paced(client(opts.secretKey + "x"), "wrong").request("ListKeys", {}), "AuthFailure.SignatureFailure"),
  );
  await step("ListKeys v1 HmacSHA256", async () => {
    const r = await paced(client(opts.secretKey, "HmacSHA256"), "v1").request("ListKeys", { Limit: 200 });
    check(r.Keys.some((k) => k.KeyId === keyId), "the new key is not listed (v1)");
  });
}

main().catch((e) => {
  if (!(e instanceof StepFailed)) emit("unexpected", false, { error: String(e && e.stack) });
  process.exit(1);
});
