#!/usr/bin/env node
// A DePAI fleet robot in JavaScript, written from docs/protocol.md alone (Node.js, `mqtt`, `tweetnacl`).
//
// It connects with a signed will, publishes its signed birth, drives along +x at up to 1 m/s
// publishing signed telemetry at 2 Hz, and after DEPAI_SECONDS publishes a signed death and
// disconnects. One JSON line on stdout per notable thing. Configuration, from the environment:
//
//   DEPAI_SEED       the robot's Ed25519 seed, 64 hex characters
//   DEPAI_DID        its did:peaq (the seed is checked against it, or against the document)
//   DEPAI_BROKER     the fleet's broker, mqtt://host:port
//   DEPAI_USERNAME   its MQTT username (its SS58 address, the part of the DID after the last ":")
//   DEPAI_PASSWORD   its MQTT password, as the operator issued it
//   DEPAI_X, DEPAI_Y where it starts, metres in the fleet's map frame (default 0, 0)
//   DEPAI_SECONDS    how long to run (default 10)
//   DEPAI_MODE       honest (default) | tamper: one telemetry envelope is altered after signing
//                    (the fleet must refuse it as bad_signature) | replay: one telemetry envelope
//                    is sent twice, verbatim (the fleet must refuse the copy as replayed)
//   DEPAI_DOCUMENT   optional: its DID document as the registry holds it (JSON, or a file holding
//                    it). The birth carries it and the topic root and key id are read from it.
//                    Without it the robot describes itself with a minimal unsigned document and
//                    computes its topic root (and says so with a "warning" line).
//   DEPAI_KID        optional: its key id (default: from the document, else key-1)

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import mqtt from "mqtt";
import nacl from "tweetnacl";

// ---- canonical JSON (RFC 8785), exactly as docs/protocol.md "Canonical JSON in practice" says ----

// JSON.stringify writes strings and numbers canonically; member names are sorted by UTF-16 code
// units, which is what Array.prototype.sort does by default.
export function jcs(value) {
  if (typeof value === "number" && !Number.isFinite(value)) throw new Error(`JSON cannot carry ${value}`);
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(jcs).join(",")}]`;
  const members = Object.keys(value).filter((k) => value[k] !== undefined).sort();
  return `{${members.map((k) => `${JSON.stringify(k)}:${jcs(value[k])}`).join(",")}}`;
}

// ---- the signed envelope ("The signed envelope": "The exact bytes") ----

const DOMAIN = Buffer.from("depai/envelope/v1", "ascii");
const TAIL = ',"v":1}';

export function digest(kind, unsigned) {
  const zero = Buffer.from([0]);
  return createHash("sha256")
    .update(Buffer.concat([DOMAIN, zero, Buffer.from(kind, "ascii"), zero, Buffer.from(unsigned, "utf8")]))
    .digest();
}

// The wire bytes (a Buffer) of an envelope of `kind` carrying `body`.
export function seal({ seed, did, kid }, kind, body, { seq, iat, ttlMs = 60000 }) {
  const unsigned = jcs({ body, exp: iat + ttlMs, iat, iss: did, kid, kind, seq, v: 1 });
  if (!unsigned.endsWith(TAIL)) throw new Error("the unsigned envelope must end with ,\"v\":1}");
  const { secretKey } = nacl.sign.keyPair.fromSeed(seed);
  const sig = Buffer.from(nacl.sign.detached(digest(kind, unsigned), secretKey)).toString("base64url");
  return Buffer.from(`${unsigned.slice(0, -TAIL.length)},"sig":"${sig}"${TAIL}`, "utf8");
}

// ---- identities: did:peaq and Multikey (docs/identity.md "DIDs"), to check the seed is the DID's ----

const B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

function base58(bytes) {
  let n = BigInt(`0x${Buffer.from(bytes).toString("hex") || "0"}`);
  let text = "";
  while (n > 0n) {
    text = B58[Number(n % 58n)] + text;
    n /= 58n;
  }
  for (const byte of bytes) {
    if (byte !== 0) break;
    text = `1${text}`;
  }
  return text;
}

export function ss58Address(publicKey, prefix = 42) {
  const payload = Buffer.concat([Buffer.from([prefix]), Buffer.from(publicKey)]);
  const checksum = createHash("blake2b512").update(Buffer.concat([Buffer.from("SS58PRE"), payload])).digest();
  return base58(Buffer.concat([payload, checksum.subarray(0, 2)]));
}

export const multikey = (publicKey) => `z${base58(Buffer.concat([Buffer.from([0xed, 0x01]), Buffer.from(publicKey)]))}`;

// The worked example of docs/protocol.md, reproduced before anything is signed for real.
const EXAMPLE_PAYLOAD =
  '{"body":{"battery":0.93,"x":1.5},"exp":1790000060000,"iat":1790000000000,' +
  '"iss":"did:peaq:5C9TqVEs5Q51zUdjvp6tSsjHAfLseJKq1Dq6ULcuSLqEuRSf","kid":"key-1","kind":"telemetry",' +
  '"seq":100,"sig":"s4OouPGAMsU0lol0bVxdvpv3g4gPqTlqlmwOSnhPxVp4dl3RfcqlEfGhF3eBHrIXeOEQS0lkyIIqjJfHNAhpCg","v":1}';

export function selfTest() {
  const seed = Uint8Array.from({ length: 32 }, (_, i) => i);
  const did = "did:peaq:5C9TqVEs5Q51zUdjvp6tSsjHAfLseJKq1Dq6ULcuSLqEuRSf";
  const wire = seal({ seed, did, kid: "key-1" }, "telemetry", { battery: 0.93, x: 1.5 },
    { seq: 100, iat: 1790000000000 });
  const publicKey = nacl.sign.keyPair.fromSeed(seed).publicKey;
  return wire.toString("utf8") === EXAMPLE_PAYLOAD && `did:peaq:${ss58Address(publicKey)}` === did
    && multikey(publicKey) === "z6MkehRgf7yJbgaGfYsdoAsKdBPE3dj2CYhowQdcjqSJgvVd";
}

// ---- the robot ----

const say = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);

class ConfigError extends Error {}

function loadConfig(env) {
  const need = (name) => {
    if (!env[name]) throw new ConfigError(`${name} is not set`);
    return env[name];
  };
  const number = (name, fallback) => {
    const value = env[name] === undefined || env[name] === "" ? fallback : Number(env[name]);
    if (!Number.isFinite(value)) throw new ConfigError(`${name} must be a number, got ${env[name]}`);
    return value;
  };
  const seedHex = need("DEPAI_SEED");
  if (!/^[0-9a-fA-F]{64}$/.test(seedHex)) throw new ConfigError("DEPAI_SEED must be 64 hex characters");
  const seed = Uint8Array.from(Buffer.from(seedHex, "hex"));
  const did = need("DEPAI_DID");
  const publicKey = nacl.sign.keyPair.fromSeed(seed).publicKey;
  const mode = env.DEPAI_MODE || "honest";
  if (!["honest", "tamper", "replay"].includes(mode)) {
    throw new ConfigError(`DEPAI_MODE ${mode}: honest, tamper or replay`);
  }
  let document = null;
  if (env.DEPAI_DOCUMENT) {
    const given = env.DEPAI_DOCUMENT;
    document = JSON.parse(given.trimStart().startsWith("{") ? given : readFileSync(given, "utf8"));
    if (document.id !== did) throw new ConfigError(`DEPAI_DOCUMENT is the document of ${document.id}, not ${did}`);
    // The document holds the current key (after a rotation it is no longer the one the DID was made from).
    if (!(document.verificationMethod ?? []).some((method) => method.publicKeyMultibase === multikey(publicKey))) {
      throw new ConfigError("DEPAI_DOCUMENT does not hold the key of DEPAI_SEED");
    }
  } else if (did !== `did:peaq:${ss58Address(publicKey)}`) {
    throw new ConfigError(`DEPAI_SEED is not the key of ${did} (it is did:peaq:${ss58Address(publicKey)})`);
  }
  return {
    seed, did, publicKey, mode, document,
    address: did.slice(did.lastIndexOf(":") + 1),
    broker: need("DEPAI_BROKER"),
    username: need("DEPAI_USERNAME"),
    password: need("DEPAI_PASSWORD"),
    x: number("DEPAI_X", 0),
    y: number("DEPAI_Y", 0),
    seconds: number("DEPAI_SECONDS", 10),
    kid: env.DEPAI_KID || null,
  };
}

// The topic root from the document's MQTTTopicRoot service ("Topic root": read it, do not compute it).
function topicRootOf(document) {
  const service = (document.service ?? []).find((s) => s.type === "MQTTTopicRoot");
  return service?.serviceEndpoint?.topicRoot ?? null;
}

// What the robot says about itself when it was not given its registered document.
function minimalDocument(did, publicKey, topicRoot) {
  return {
    "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
    id: did,
    controller: did,
    verificationMethod: [
      { id: `${did}#key-1`, type: "Multikey", controller: did, publicKeyMultibase: multikey(publicKey) },
    ],
    authentication: [`${did}#key-1`],
    assertionMethod: [`${did}#key-1`],
    service: [{ id: `${did}#mqtt`, type: "MQTTTopicRoot", serviceEndpoint: { topicRoot } }],
  };
}

async function run(config) {
  let { document } = config;
  if (document === null) {
    const partition = createHash("sha256").update(config.did, "utf8").digest("hex")[0];
    document = minimalDocument(config.did, config.publicKey, `depai/v1/robots/${partition}/${config.address}`);
    say({ event: "warning", message: "DEPAI_DOCUMENT not given: the birth carries a minimal unsigned document and "
      + "the topic root is computed" });
  }
  const root = topicRootOf(document);
  if (!root) throw new ConfigError("the DID document has no MQTTTopicRoot service");
  const kid = config.kid ?? document.verificationMethod?.[0]?.id?.split("#")[1] ?? "key-1";
  const identity = { seed: config.seed, did: config.did, kid };
  say({ event: "start", did: config.did, topic_root: root, kid, mode: config.mode });

  // One counter per identity, started at the wall clock in microseconds, +1 per signed message.
  let nextSeq = Date.now() * 1000;
  const sign = (kind, body, { seq = nextSeq++, ttlMs = 60000 } = {}) =>
    ({ seq, wire: seal(identity, kind, body, { seq, iat: Date.now(), ttlMs }) });

  // "Connecting, every time": the birth first (its seq is the epoch), then the will naming that epoch.
  let epoch = null;
  let birth = null;
  const newSession = () => {
    epoch = nextSeq++;
    birth = sign("birth", { document, epoch, software: "depai-js-robot 1.0.0" }, { seq: epoch });
    const will = sign("death", { epoch, reason: "will" }, { ttlMs: 3600000 });
    return { topic: `${root}/death`, payload: will.wire, qos: 1, retain: true };
  };

  const client = mqtt.connect(config.broker, {
    protocolVersion: 4, clean: false, clientId: config.address, keepalive: 30,
    username: config.username, password: config.password, will: newSession(),
    reconnectPeriod: 1000, connectTimeout: 10000,
  });
  const publish = (kind, wire, seq, extra = {}) => {
    client.publish(`${root}/${kind}`, wire, { qos: 1, retain: false }, (err) => {
      if (err) say({ event: "error", message: `${kind} ${seq}: ${err.message}` });
      else say({ event: "sent", kind, seq, ...extra }); // acknowledged by the broker (PUBACK)
    });
  };

  // Telemetry at 2 Hz: a straight line along +x, within the declared maximum speed.
  const speed = Math.min(1.0, Number(document.machine?.max_speed_mps ?? 1.5));
  let born = false; // a birth of this connection was acknowledged
  let t0 = null; // when it started moving
  let samples = 0;
  let battery = 0.9;
  const sent = [];
  const telemetry = () => {
    if (!born) return; // nothing but the birth until its PUBACK, and nothing while offline
    samples += 1;
    const t = Date.now();
    const travelled = (speed * (t - t0)) / 1000;
    battery = Math.round((battery - 0.001) * 1000) / 1000;
    const body = {
      t, pose: { x: config.x + travelled, y: config.y, theta: 0 }, twist: { v: speed, w: 0 },
      battery, odometer_m: travelled, state: "idle", // no task, no goto command: "idle" by the docs' rule
    };
    const { seq, wire } = sign("telemetry", body);
    if (config.mode === "tamper" && samples === 2) {
      // Change one byte of the signed body: the first decimal of the battery, to another nonzero
      // digit (so the number stays canonical JSON and only the signature can catch it).
      const at = wire.indexOf('"battery":0.') + '"battery":0.'.length;
      wire[at] = wire[at] === 0x35 ? 0x34 : 0x35; // '5' <-> '4'
      publish("telemetry", wire, seq, { tampered: true });
      return;
    }
    publish("telemetry", wire, seq);
    sent.push({ seq, wire });
    if (config.mode === "replay" && samples === 2) {
      const [first] = sent;
      publish("telemetry", first.wire, first.seq, { replayed: true }); // byte for byte, a second time
    }
  };

  // A reconnect is a new session: new birth, new epoch, new will (mqtt.js reads options.will at each CONNECT).
  client.on("reconnect", () => { client.options.will = newSession(); });
  client.on("close", () => { born = false; });
  client.on("offline", () => say({ event: "offline" }));
  client.on("error", (err) => say({ event: "error", message: err.message }));
  client.on("message", (topic, payload) => {
    // Commands are not obeyed: verifying them needs the commanders' DIDs, provisioned out of band.
    say({ event: "command", topic, bytes: payload.length, acted: false });
  });
  client.on("connect", async () => {
    say({ event: "connected" });
    try {
      await client.subscribeAsync(`${root}/cmd`, { qos: 1 });
      await client.publishAsync(`${root}/birth`, birth.wire, { qos: 1, retain: true }); // resolves on PUBACK
      say({ event: "sent", kind: "birth", seq: birth.seq, epoch });
      born = true;
      t0 ??= Date.now();
      telemetry();
    } catch (err) {
      say({ event: "error", message: `birth: ${err.message}` });
    }
  });
  const timer = setInterval(telemetry, 500);

  // Run for DEPAI_SECONDS (or until SIGINT / SIGTERM), then "Shutting down".
  await new Promise((resolve) => {
    const stop = setTimeout(resolve, config.seconds * 1000);
    for (const signal of ["SIGINT", "SIGTERM"]) process.once(signal, () => { clearTimeout(stop); resolve(); });
  });
  clearInterval(timer);
  let ok = born;
  if (born) {
    const death = sign("death", { epoch, reason: "shutdown" });
    try {
      await client.publishAsync(`${root}/death`, death.wire, { qos: 1, retain: true });
      say({ event: "sent", kind: "death", seq: death.seq, epoch });
    } catch (err) {
      say({ event: "error", message: `death: ${err.message}` });
      ok = false;
    }
    await client.endAsync(); // waits for in-flight PUBACKs, then DISCONNECT: the broker discards the will
  } else {
    say({ event: "error", message: "never came online (no birth acknowledged)" });
    await client.endAsync(true);
  }
  say({ event: "disconnected" });
  return ok ? 0 : 1;
}

async function main() {
  if (!selfTest()) {
    say({ event: "error", message: "the worked example of docs/protocol.md does not reproduce; not signing" });
    return 1;
  }
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    say({ event: "error", message: err.message });
    return 2;
  }
  try {
    return await run(config);
  } catch (err) {
    say({ event: "error", message: err.message });
    return err instanceof ConfigError ? 2 : 1;
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  process.exitCode = await main();
}
