// End-to-end check of sealgate's Infisical KMS face with Infisical's official
// Node SDK (`@infisical/sdk`, pinned in tests/sdk/node/package.json).
//
// The SDK sends the path's `keyId` in the body too (encrypt, decrypt, sign,
// verify), and sends `keyUsage` on create: this is the flow that proves the
// face accepts the bodies real Infisical accepts. Walks, with the SDK's own
// methods only (5.x has no list, get-by-id or update for KMS keys):
//
//   universal-auth login -> create an encrypt-decrypt key -> encrypt -> decrypt
//   -> get by name -> sign-verify keys (RSA_4096, ECC_NIST_P256) -> signing
//   algorithms -> public key -> sign with every algorithm, each signature
//   checked with node:crypto alone and through the SDK's verify (a tampered
//   message is signatureValid false) -> sign a digest -> the errors the SDK
//   reports (422 list, wrong kind of key, unknown name) -> delete -> gone
//   -> a wrong clientSecret is 401, a bogus token 403
//
// Prints one JSON line per step ({"step", "ok", ...}) and exits 1 at the first
// failure (2 for bad usage).
//
// Usage:
//   node infisical_flow.mjs --sdk-dir DIR --host http://HOST:PORT --client-id ID --client-secret S
// DIR is where tests/sdk/setup-node.sh installed the SDKs (it holds node_modules/).

import { createRequire } from "node:module";
import crypto from "node:crypto";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { parseArgs } from "node:util";

class StepFailed extends Error {}

export function emit(step, ok, extra = {}) {
  process.stdout.write(JSON.stringify({ step, ok, ...extra }) + "\n");
}

export function check(step, cond, extra = {}) {
  if (!cond) {
    emit(step, false, extra);
    throw new StepFailed(step);
  }
  emit(step, true, extra);
}

// The SDK's errors carry the status only inside their message: a string
// `message` from the server becomes "[URL=…] [Method=…] [StatusCode=404]
// <message>"; a 422, whose `message` is the list of issues (as Infisical
// sends it), becomes "Request failed with status 422".
function statusOf(e) {
  const msg = String(e?.message ?? "");
  const m = /\[StatusCode=(\d+)\]/.exec(msg) ?? /Request failed with status (\d+)/.exec(msg);
  return m ? Number(m[1]) : null;
}

async function expectApiError(step, status, fn, contains) {
  try {
    await fn();
  } catch (e) {
    const got = statusOf(e);
    const msg = String(e?.message ?? e);
    check(step, got === status && (contains === undefined || msg.includes(contains)), {
      status: got,
      error: msg,
      name: e?.name,
    });
    return e;
  }
  emit(step, false, { error: "no error raised" });
  throw new StepFailed(step);
}

const b64 = (buf) => Buffer.from(buf).toString("base64");

// Checks a signature with node:crypto alone (no sealgate code): Infisical's
// PSS is MGF1 with the same hash and a salt of the digest's length; ECDSA
// signatures are DER (r, s).
function independentlyValid(publicKey, alg, message, signature) {
  const bits = alg.split("_").pop();
  const hash = `sha${bits}`;
  const opts = { key: publicKey };
  if (alg.startsWith("RSASSA_PSS")) {
    opts.padding = crypto.constants.RSA_PKCS1_PSS_PADDING;
    opts.saltLength = Number(bits) / 8;
  } else if (alg.startsWith("RSASSA_PKCS1_V1_5")) {
    opts.padding = crypto.constants.RSA_PKCS1_PADDING;
  } else {
    opts.dsaEncoding = "der";
  }
  return crypto.verify(hash, message, opts, signature);
}

async function run(sdkDir, host, clientId, clientSecret) {
  const require = createRequire(path.join(path.resolve(sdkDir), "node_modules", "_"));
  const { InfisicalSDK } = require("@infisical/sdk");

  const client = new InfisicalSDK({ siteUrl: host });
  const authed = await client.auth().universalAuth.login({ clientId, clientSecret });
  const token = authed.auth().getAccessToken();
  check("login", authed === client && typeof token === "string" && token.length > 0);
  const kms = client.kms();
  const project = randomUUID();

  const key = await kms.keys().create({
    projectId: project,
    name: "node-a",
    description: "made by infisical_flow.mjs",
    keyUsage: "encrypt-decrypt",
    encryptionAlgorithm: "aes-256-gcm",
  });
  check(
    "create_key",
    key.name === "node-a" &&
      key.projectId === project &&
      key.isDisabled === false &&
      key.version === 1 &&
      key.keyUsage === "encrypt-decrypt" &&
      key.encryptionAlgorithm === "aes-256-gcm" &&
      key.description === "made by infisical_flow.mjs",
    { key_id: key.id },
  );

  const secret = Buffer.from("hello infisical from node \x00\xff", "latin1");
  const ct = await kms.encryption().encrypt({ keyId: key.id, plaintext: b64(secret) });
  check("encrypt", typeof ct === "string" && !Buffer.from(ct, "base64").equals(secret));
  const pt = await kms.encryption().decrypt({ keyId: key.id, ciphertext: ct });
  check("decrypt", Buffer.from(pt, "base64").equals(secret));

  const byName = await kms.keys().getByName({ projectId: project, name: "node-a" });
  check("get_key_by_name", byName.id === key.id && byName.orgId === key.orgId);
  await expectApiError(
    "get_key_by_name_unknown",
    404,
    () => kms.keys().getByName({ projectId: project, name: "no-such-key" }),
  );

  // validation still refuses bad values of the members a route knows (the
  // SDK reports a 422 by its status only: the issues are a list)
  await expectApiError("encrypt_not_base64_422", 422, () =>
    kms.encryption().encrypt({ keyId: key.id, plaintext: "not base64!" }),
  );
  await expectApiError("sign_is_digest_mistyped_422", 422, () =>
    kms.signing().sign({ keyId: key.id, data: "aGk=", signingAlgorithm: "ECDSA_SHA_256", isDigest: "yes" }),
  );

  const wantAlgs = {
    RSA_4096: [
      "RSASSA_PSS_SHA_512",
      "RSASSA_PSS_SHA_384",
      "RSASSA_PSS_SHA_256",
      "RSASSA_PKCS1_V1_5_SHA_512",
      "RSASSA_PKCS1_V1_5_SHA_384",
      "RSASSA_PKCS1_V1_5_SHA_256",
    ],
    ECC_NIST_P256: ["ECDSA_SHA_256"],
  };
  const message = Buffer.from("release v1.2.3 \x00\xff", "latin1");
  const keys = {};
  for (const [name, keyAlg] of [
    ["sig-rsa", "RSA_4096"],
    ["sig-ecc", "ECC_NIST_P256"],
  ]) {
    const k = await kms.keys().create({
      projectId: project,
      name,
      keyUsage: "sign-verify",
      encryptionAlgorithm: keyAlg,
    });
    check(`create_${keyAlg}`, k.encryptionAlgorithm === keyAlg && k.keyUsage === "sign-verify", {
      key_id: k.id,
    });
    keys[keyAlg] = k;

    const algs = await kms.signing().listSigningAlgorithms({ keyId: k.id });
    check(`signing_algorithms_${keyAlg}`, JSON.stringify(algs) === JSON.stringify(wantAlgs[keyAlg]), {
      algs,
    });
    const der = Buffer.from(await kms.signing().getPublicKey({ keyId: k.id }), "base64");
    const publicKey = crypto.createPublicKey({ key: der, format: "der", type: "spki" });
    const details = publicKey.asymmetricKeyDetails ?? {};
    check(
      `public_key_${keyAlg}`,
      keyAlg === "RSA_4096"
        ? publicKey.asymmetricKeyType === "rsa" && details.modulusLength === 4096
        : publicKey.asymmetricKeyType === "ec" && details.namedCurve === "prime256v1",
    );

    for (const alg of algs) {
      const out = await kms.signing().sign({ keyId: k.id, data: b64(message), signingAlgorithm: alg });
      const sig = Buffer.from(out.signature, "base64");
      check(`sign_${alg}`, out.keyId === k.id && out.signingAlgorithm === alg);
      check(`independent_verify_${alg}`, independentlyValid(publicKey, alg, message, sig));
      check(
        `independent_rejects_tampered_${alg}`,
        !independentlyValid(publicKey, alg, Buffer.concat([message, Buffer.from("!")]), sig),
      );
      for (const [data, want] of [
        [message, true],
        [Buffer.concat([message, Buffer.from("!")]), false],
      ]) {
        const v = await kms.signing().verify({
          keyId: k.id,
          data: b64(data),
          signature: out.signature,
          signingAlgorithm: alg,
        });
        check(`verify_${alg}_${want}`, v.signatureValid === want && v.keyId === k.id && v.signingAlgorithm === alg);
      }
    }
  }

  // a digest signed by the face verifies as a signature over the message
  const digest = crypto.createHash("sha256").update(message).digest();
  for (const [keyAlg, alg] of [
    ["RSA_4096", "RSASSA_PKCS1_V1_5_SHA_256"],
    ["ECC_NIST_P256", "ECDSA_SHA_256"],
  ]) {
    const k = keys[keyAlg];
    const out = await kms.signing().sign({ keyId: k.id, data: b64(digest), signingAlgorithm: alg, isDigest: true });
    const der = Buffer.from(await kms.signing().getPublicKey({ keyId: k.id }), "base64");
    const publicKey = crypto.createPublicKey({ key: der, format: "der", type: "spki" });
    const sig = Buffer.from(out.signature, "base64");
    const v = await kms.signing().verify({
      keyId: k.id,
      data: b64(digest),
      signature: out.signature,
      signingAlgorithm: alg,
      isDigest: true,
    });
    check(`sign_digest_${alg}`, independentlyValid(publicKey, alg, message, sig) && v.signatureValid === true);
  }

  await expectApiError(
    "sign_with_encrypt_key",
    400,
    () => kms.signing().sign({ keyId: key.id, data: "aGk=", signingAlgorithm: "ECDSA_SHA_256" }),
    "Unsupported key type, expected sign-verify but got encrypt-decrypt",
  );
  await expectApiError(
    "encrypt_with_sign_key",
    400,
    () => kms.encryption().encrypt({ keyId: keys.RSA_4096.id, plaintext: "aGk=" }),
    "Unsupported key type, expected encrypt-decrypt but got sign-verify",
  );

  const deleted = await kms.keys().delete({ keyId: key.id });
  check("delete", deleted.id === key.id && deleted.name === "node-a");
  await expectApiError("deleted_key_gone", 404, () => kms.keys().getByName({ projectId: project, name: "node-a" }));
  await expectApiError("deleted_key_no_decrypt", 404, () =>
    kms.encryption().decrypt({ keyId: key.id, ciphertext: ct }),
  );

  const bad = new InfisicalSDK({ siteUrl: host });
  await expectApiError(
    "wrong_secret",
    401,
    () => bad.auth().universalAuth.login({ clientId, clientSecret: "x".repeat(40) }),
    "Invalid credentials",
  );
  const bogus = new InfisicalSDK({ siteUrl: host });
  bogus.auth().accessToken("bogus-token");
  await expectApiError("bogus_token", 403, () => bogus.kms().keys().getByName({ projectId: project, name: "sig-rsa" }));
}

async function main() {
  const { values } = parseArgs({
    options: {
      "sdk-dir": { type: "string", default: process.env.SDK_NODE_DIR },
      host: { type: "string", default: process.env.SEALGATE_INFISICAL_HOST },
      "client-id": { type: "string", default: process.env.INFISICAL_CLIENT_ID },
      "client-secret": { type: "string", default: process.env.INFISICAL_CLIENT_SECRET },
    },
  });
  const { "sdk-dir": sdkDir, host, "client-id": id, "client-secret": secret } = values;
  if (!(sdkDir && host && id && secret)) {
    process.stderr.write("need --sdk-dir, --host, --client-id and --client-secret\n");
    return 2;
  }
  try {
    await run(sdkDir, host, id, secret);
  } catch (e) {
    if (e instanceof StepFailed) return 1;
    // an SDK-side failure (a request error, a missing field) is a failure too
    emit("unexpected", false, { error: `${e?.name}: ${e?.message ?? e}` });
    return 1;
  }
  emit("done", true);
  return 0;
}

process.exitCode = await main();
