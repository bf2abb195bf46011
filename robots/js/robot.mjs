#!/usr/bin/env node
// A DePAI fleet robot in JavaScript, written from docs/protocol.md alone (Node.js, `mqtt`, `tweetnacl`).
//
// It connects with a signed will, publishes its signed birth, publishes signed telemetry at 2 Hz,
// and after DEPAI_SECONDS publishes a signed death and disconnects. One JSON line on stdout per
// notable thing. Two ways to run it:
//
// Given everything (the robot's key, login, document and broker, as an operator provisions it):
// it drives along +x at up to 1 m/s. Configuration, from the environment:
//
//   DEPAI_SEED       the robot's Ed25519 seed, 64 hex characters
//   DEPAI_DID        its did:peaq (the seed is checked against it, or against the document)
//   DEPAI_BROKER     the fleet's broker, mqtt://host:port (or mqtts://host:port with DEPAI_CA_FILE)
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
//
// From the fleet's network address (a robot on another machine, docs/hardware.md "A robot on
// another machine"): with DEPAI_FLEET it fetches the fleet descriptor (GET /api/fleet), checks the
// operator's signature on it, resolves every DID it needs over HTTP (GET /1.0/identifiers/{did}/
// history: its own document, the operator's and the marketplace's keys with their rotation history,
// each version's proof checked), connects to the broker the descriptor names (TLS when it has a
// listener for it), and takes part in the marketplace: it verifies task announcements and awards
// (signed by the marketplace, on their topics, not replayed, by a key valid when they were signed),
// bids, drives to the pickup and the dropoff in straight lines at its document's maximum speed,
// and publishes its receipt. DEPAI_BROKER and DEPAI_DOCUMENT are then not needed; also:
//
//   DEPAI_FLEET      the fleet's dashboard, http://host:port
//   DEPAI_OPERATOR   optional: the operator's DID the descriptor must be signed by (default: the
//                    one the fleet names, printed as {"event":"operator","pinned":true}: check it)
//   DEPAI_CA_FILE    the CA certificate of the broker's TLS listener, as the operator handed it over
//   DEPAI_TASKS      optional: stop (cleanly) once this many tasks are delivered

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

// ---- reading what others signed: base58, Multikey, Data Integrity proofs ----

export function unbase58(text) {
  let n = 0n;
  for (const char of text) {
    const digit = B58.indexOf(char);
    if (digit < 0) throw new Error(`not base58: ${char}`);
    n = n * 58n + BigInt(digit);
  }
  let hex = n === 0n ? "" : n.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  const zeros = text.length - text.replace(/^1+/, "").length;
  return Buffer.concat([Buffer.alloc(zeros), Buffer.from(hex, "hex")]);
}

// The Ed25519 key of a Multikey ("z" + base58btc of ed 01 || key).
export function decodeMultikey(text) {
  if (typeof text !== "string" || !text.startsWith("z")) throw new Error("a Multikey starts with z");
  const raw = unbase58(text.slice(1));
  if (raw.length !== 34 || raw[0] !== 0xed || raw[1] !== 0x01) throw new Error("not an Ed25519 Multikey");
  return Uint8Array.from(raw.subarray(2));
}

const sha256 = (data) => createHash("sha256").update(data).digest();

// An eddsa-jcs-2022 proof (docs/identity.md "DID documents"): Ed25519 over
// SHA-256(JCS(proof options)) || SHA-256(JCS(document without proof)).
export function proofVerifies(document, publicKey) {
  const proof = document?.proof;
  if (!proof || proof.type !== "DataIntegrityProof" || proof.cryptosuite !== "eddsa-jcs-2022") return false;
  if (typeof proof.proofValue !== "string" || !proof.proofValue.startsWith("z")) return false;
  const options = { ...proof, proofValue: undefined };
  if (options["@context"] !== undefined) {
    const expected = [options["@context"]].flat();
    const actual = [document["@context"]].flat();
    if (jcs(actual.slice(0, expected.length)) !== jcs(expected)) return false;
  }
  const data = Buffer.concat([sha256(jcs(options)), sha256(jcs({ ...document, proof: undefined }))]);
  try {
    return nacl.sign.detached.verify(data, unbase58(proof.proofValue.slice(1)), publicKey);
  } catch {
    return false;
  }
}

class Refused extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

// "2026-09-21T14:13:20.123Z" -> [ms, exact]; whole seconds are exact only to the second.
function parseTime(text) {
  const match = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,9})?Z$/.exec(String(text));
  if (!match) throw new Refused("resolver_malformed", `versionTime ${text} is not a UTC dateTime`);
  const ms = Date.parse(`${match[1]}Z`) + (match[2] ? Number(match[2].slice(1, 4).padEnd(3, "0")) : 0);
  return [ms, match[2] !== undefined];
}

// ---- DIDs over HTTP (the fleet's resolver, docs/protocol.md "Resolving DIDs over HTTP") ----
//
// Every version of a DID with the time it took effect; each version's proof is checked against the
// version before (or the controller's key of that time), the first against the key the DID was made
// from, so the resolver cannot invent a key. A key's window runs from its version to the next
// rotation. Cached for ttlMs; an unknown key id fetches the history again at once (a rotation).
export class Resolver {
  constructor(base, { ttlMs = 5000, refetchMs = 1000 } = {}) {
    this.base = base.replace(/\/+$/, "");
    this.ttlMs = ttlMs;
    this.refetchMs = refetchMs;
    this.held = new Map(); // did -> {versions, keys, at}
    this.forced = new Map(); // did -> when an unknown key id last made it fetch again
    this.fetches = 0;
  }

  async history(did, { force = false, depth = 0 } = {}) {
    const held = this.held.get(did);
    if (held && !force && Date.now() - held.at < this.ttlMs) return held;
    if (depth > 4) throw new Refused("history_invalid", `${did}: controllers nest too deep`);
    this.fetches += 1;
    let response;
    try {
      response = await fetch(`${this.base}/1.0/identifiers/${encodeURIComponent(did).replaceAll("%3A", ":")}/history`,
        { headers: { accept: "application/json" }, signal: AbortSignal.timeout(5000) });
    } catch (err) {
      if (held && Date.now() - held.at < 60000) return held; // a blip: what we had is the best we know
      throw new Refused("resolver_unreachable", `cannot reach the resolver at ${this.base}: ${err.message}`);
    }
    if (response.status === 404 || response.status === 410) {
      await response.body?.cancel();
      throw new Refused("unknown_did", `${did} is not known to the resolver`);
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw new Refused("resolver_unreachable", `the resolver answered ${response.status} for ${did}`);
    }
    const body = await response.json();
    if (!Array.isArray(body?.versions) || body.versions.length === 0) {
      throw new Refused("resolver_malformed", `the history of ${did} is not {did, versions}`);
    }
    const fresh = await this.#check(did, body.versions, depth);
    this.held.set(did, fresh);
    return fresh;
  }

  async #check(did, raw, depth) {
    const versions = [];
    for (const [index, entry] of raw.entries()) {
      const document = entry?.didDocument;
      if (String(entry?.versionId) !== String(index + 1) || document?.id !== did) {
        throw new Refused("resolver_malformed", `version ${index + 1} of ${did} is missing or out of order`);
      }
      const [at, exact] = parseTime(entry.versionTime);
      const deactivated = entry.deactivated === true || document.deactivated === true;
      const previous = versions.at(-1);
      if (previous?.deactivated) throw new Refused("history_invalid", `${did} changed after its deactivation`);
      let kid = null;
      let publicKey = null;
      if (!deactivated) {
        const method = document.verificationMethod?.[0];
        kid = String(method?.id ?? "").split("#")[1] ?? null;
        publicKey = decodeMultikey(method?.publicKeyMultibase);
      }
      const signer = String(document.proof?.verificationMethod ?? "");
      const [signerDid, fragment] = signer.split("#");
      let key;
      if (!previous) { // genesis: self-signed by the key the DID was made from
        if (kid !== "key-1" || did !== `did:peaq:${ss58Address(publicKey)}` || signer !== `${did}#key-1`) {
          throw new Refused("history_invalid", `the first version of ${did} is not its own key's`);
        }
        key = publicKey;
      } else if (signerDid === did) { // the DID's key of the version before
        if (fragment !== previous.kid) throw new Refused("history_invalid", `${did}: signed by a retired key`);
        key = previous.publicKey;
      } else if (signerDid === (previous.document.controller ?? did)) { // its controller's key of that time
        const record = (await this.history(signerDid, { depth: depth + 1 })).keys.get(fragment);
        if (!record || at + 999 < record.from || (record.until !== null && at >= record.until + 999)) {
          throw new Refused("history_invalid", `${did}: signed by a key its controller did not hold then`);
        }
        key = record.publicKey;
      } else {
        throw new Refused("history_invalid", `${did}: signed by ${signerDid}, neither it nor its controller`);
      }
      if (!proofVerifies(document, key)) throw new Refused("history_invalid", `${did}: version ${index + 1}'s proof`);
      versions.push({ version: index + 1, document, kid, publicKey, at, end: exact ? at : at + 999, deactivated });
    }
    // Each key: from the version that brought it until the one that replaced it (or the deactivation).
    const keys = new Map();
    const deactivatedAt = versions.find((v) => v.deactivated)?.end ?? null;
    for (const version of versions) {
      if (version.kid === null || keys.has(version.kid)) continue;
      for (const record of keys.values()) record.until ??= version.end;
      keys.set(version.kid, { publicKey: version.publicKey, from: version.at, until: null, deactivatedAt });
    }
    return { versions, keys, at: Date.now() };
  }

  async key(did, kid) {
    let held = await this.history(did);
    if (!held.keys.has(kid) && Date.now() - (this.forced.get(did) ?? 0) >= this.refetchMs) {
      this.forced.set(did, Date.now()); // perhaps a rotation not seen yet (made-up key ids: once a second)
      held = await this.history(did, { force: true });
    }
    const record = held.keys.get(kid);
    if (!record) throw new Refused("unknown_key", `${did} has no key ${kid}`);
    return record;
  }

  async active(did) {
    const current = (await this.history(did)).versions.at(-1);
    if (current.deactivated) throw new Refused("deactivated", `${did} is deactivated`);
    return current;
  }
}

// ---- verifying an envelope (docs/protocol.md "What the fleet checks, in order") ----

const FIELDS = ["body", "exp", "iat", "iss", "kid", "kind", "seq", "sig", "v"];

// The sliding replay window of docs/protocol.md "Sequence numbers and epochs", per issuer.
export class ReplayWindow {
  constructor(size = 1024) {
    this.size = size;
    this.state = new Map(); // issuer -> {highest, seen: Set}
  }

  accept(issuer, seq) {
    const state = this.state.get(issuer);
    if (!state) {
      this.state.set(issuer, { highest: seq, seen: new Set([seq]) });
      return null;
    }
    if (seq > state.highest) {
      state.highest = seq;
      state.seen.add(seq);
      for (const old of state.seen) if (old <= seq - this.size) state.seen.delete(old);
      return null;
    }
    if (seq <= state.highest - this.size) return "stale_sequence";
    if (state.seen.has(seq)) return "replayed";
    state.seen.add(seq);
    return null;
  }
}

// The envelope in `wire` (a Buffer), if it verifies: canonical, well-formed, of an expected kind,
// in its time window (unless archived), signed by a key of its issuer valid at its iat, not replayed.
export async function openEnvelope(wire, resolver, { kinds = null, archived = false, replay = null,
  now = Date.now() } = {}) {
  const text = wire.toString("utf8");
  let envelope;
  try {
    envelope = JSON.parse(text);
  } catch {
    throw new Refused("malformed_json", "not JSON");
  }
  if (jcs(envelope) !== text) throw new Refused("non_canonical", "not in RFC 8785 canonical form");
  if (envelope === null || typeof envelope !== "object" || jcs(Object.keys(envelope).sort()) !== jcs(FIELDS)) {
    throw new Refused("malformed_envelope", `an envelope has exactly ${FIELDS}`);
  }
  const { iss, kid, kind, seq, iat, exp, sig, v } = envelope;
  if (v !== 1) throw new Refused("unsupported_version", `envelope version ${v}`);
  const integer = (n) => Number.isSafeInteger(n) && n >= 0;
  if (typeof iss !== "string" || typeof kid !== "string" || typeof kind !== "string" || !integer(seq)
      || !integer(iat) || !integer(exp) || exp <= iat || typeof sig !== "string") {
    throw new Refused("malformed_envelope", "iss, kid, kind, seq, iat or exp is malformed");
  }
  if (kinds && !kinds.includes(kind)) throw new Refused("wrong_kind", `kind ${kind} is not accepted here`);
  if (!archived) {
    if (iat > now + 5000) throw new Refused("future_dated", `issued ${iat - now} ms in the future`);
    if (now >= exp + 5000) throw new Refused("expired", `expired ${now - exp} ms ago`);
    if (exp - iat > 3600000) throw new Refused("ttl_too_long", "a lifetime over an hour");
  }
  let record;
  try {
    record = await resolver.key(iss, kid);
  } catch (err) {
    if (err.code === "unknown_key") throw err;
    throw new Refused("unknown_issuer", err.message);
  }
  if (record.deactivatedAt !== null && iat >= record.deactivatedAt) throw new Refused("deactivated", `${iss} deactivated`);
  if (iat < record.from) throw new Refused("key_not_yet_valid", `${kid} was not yet in force at ${iat}`);
  if (record.until !== null && iat >= record.until) {
    throw new Refused("key_rotated", `${iss}#${kid} was rotated out at ${record.until}; this message is newer`);
  }
  const signature = Buffer.from(sig, "base64url");
  if (signature.length !== 64 || signature.toString("base64url") !== sig) {
    throw new Refused("malformed_envelope", "sig is not 86 characters of canonical base64url");
  }
  const unsigned = jcs({ ...envelope, sig: undefined });
  if (!nacl.sign.detached.verify(digest(kind, unsigned), signature, record.publicKey)) {
    throw new Refused("bad_signature", `signature does not verify under ${iss}#${kid}`);
  }
  const verdict = replay?.accept(iss, seq);
  if (verdict) throw new Refused(verdict, `sequence ${seq} from ${iss}`);
  return envelope;
}

// ---- joining a fleet from its network address ----

async function getJson(url) {
  let response;
  try {
    response = await fetch(url, { headers: { accept: "application/json" }, signal: AbortSignal.timeout(10000) });
  } catch (err) {
    throw new ConfigError(`cannot reach ${url}: ${err.message}`);
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw new ConfigError(`${url} answered ${response.status}`);
  }
  return response.json();
}

// The fleet descriptor, verified as its operator's; the robot's own document and key id; the broker.
export async function joinFleet(config) {
  const served = await getJson(`${config.fleet}/api/fleet`);
  if (typeof served?.envelope !== "string") throw new ConfigError(`${config.fleet}/api/fleet has no envelope`);
  const operator = config.operator ?? served.operator;
  if (served.operator && served.operator !== operator) {
    throw new ConfigError(`the fleet says its operator is ${served.operator}, not ${operator}`);
  }
  const resolver = new Resolver(config.fleet);
  let signed;
  try {
    signed = await openEnvelope(Buffer.from(served.envelope, "base64"), resolver, { archived: true });
  } catch (err) {
    throw new ConfigError(`the fleet's descriptor does not verify: ${err.code ?? ""} ${err.message}`);
  }
  if (signed.iss !== operator) throw new ConfigError(`the descriptor is signed by ${signed.iss}, not ${operator}`);
  const descriptor = signed.body;
  for (const [name, value] of Object.entries(served.descriptor ?? {})) {
    if (name in descriptor && jcs(descriptor[name]) !== jcs(value)) {
      throw new ConfigError(`the served descriptor's ${name} is not what the operator signed`);
    }
  }
  if (typeof descriptor.market !== "string") throw new ConfigError("the descriptor names no marketplace");
  const mine = await resolver.active(config.did);
  if (!mine.publicKey || Buffer.compare(Buffer.from(mine.publicKey), Buffer.from(config.publicKey)) !== 0) {
    throw new ConfigError(`DEPAI_SEED is not the current key of ${config.did} (${mine.kid})`);
  }
  let broker = config.broker ?? descriptor.broker_tls ?? descriptor.broker;
  if (typeof broker !== "string") throw new ConfigError("the descriptor names no broker");
  const host = new URL(config.fleet).hostname;
  const url = new URL(broker);
  if (["127.0.0.1", "localhost", "0.0.0.0", "[::]", "[::1]"].includes(url.hostname) && host !== url.hostname) {
    url.hostname = host; // the fleet's own host, as seen from here
    broker = url.toString().replace(/\/$/, "");
  }
  return {
    resolver, operator, pinned: config.operator === null, descriptor, broker,
    market: descriptor.market, commanders: descriptor.commanders ?? [descriptor.dispatcher, descriptor.market],
    document: mine.document, kid: mine.kid,
  };
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
  const publicKey = nacl.sign.keyPair.fromSeed(seed).publicKey;
  const fleet = env.DEPAI_FLEET ? env.DEPAI_FLEET.replace(/\/+$/, "") : null;
  const did = fleet ? env.DEPAI_DID || `did:peaq:${ss58Address(publicKey)}` : need("DEPAI_DID");
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
  } else if (!fleet && did !== `did:peaq:${ss58Address(publicKey)}`) {
    throw new ConfigError(`DEPAI_SEED is not the key of ${did} (it is did:peaq:${ss58Address(publicKey)})`);
  }
  const address = did.slice(did.lastIndexOf(":") + 1);
  return {
    seed, did, publicKey, mode, document, address, fleet,
    broker: fleet ? env.DEPAI_BROKER || null : need("DEPAI_BROKER"),
    username: fleet ? env.DEPAI_USERNAME || address : need("DEPAI_USERNAME"),
    password: need("DEPAI_PASSWORD"),
    operator: env.DEPAI_OPERATOR || null,
    caFile: env.DEPAI_CA_FILE || null,
    x: number("DEPAI_X", 0),
    y: number("DEPAI_Y", 0),
    seconds: number("DEPAI_SECONDS", 10),
    tasks: env.DEPAI_TASKS ? number("DEPAI_TASKS", 0) : Infinity,
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

const MARKET_TASKS = "depai/v1/market/tasks";
const MARKET_AWARDS = "depai/v1/market/awards";
const MAX_OPEN_OFFERS = 4; // bids standing at once (an award while busy is declined, which costs nothing)
const OFFER_LIFE_MS = 60000; // a bid with no award (to anyone) this long is forgotten
const HANDLING_MS = 4000; // in the ETA: loading and unloading
const ACCEL_MPS2 = 2.5; // speeding up and braking
const MIN_SPEED_MPS = 0.3; // the crawl at the very end of a leg

// A courier on the marketplace ("Taking part in the marketplace, step by step"): one task at a time,
// driven in straight lines at `speed`. `publish(kind, body)` signs and sends.
class Courier {
  constructor({ did, x, y, speed, capacity, publish }) {
    Object.assign(this, { did, x, y, speed, capacity, publish });
    this.theta = 0;
    this.v = 0;
    this.load = 0;
    this.task = null; // the task under way: {body, legs: [{x, y, state}]}
    this.offers = new Map(); // task id -> {body, bidHash, at}: the tasks bid for, kept for their awards
    this.seen = new Set(); // task ids already considered
    this.delivered = [];
    this.arrived = null; // the state of the leg it just finished, until settle()
    this.at = Date.now();
  }

  get state() {
    return this.task ? this.task.legs[0].state : this.delivered.length ? "delivered" : "idle";
  }

  consider(task) {
    if (this.task || this.seen.has(task.id)) return;
    const now = Date.now();
    for (const [id, offer] of this.offers) if (now - offer.at > OFFER_LIFE_MS) this.offers.delete(id);
    if (this.offers.size >= MAX_OPEN_OFFERS) return; // considered again when it is announced again
    this.seen.add(task.id);
    const metres = Math.hypot(task.pickup.x - this.x, task.pickup.y - this.y)
      + Math.hypot(task.dropoff.x - task.pickup.x, task.dropoff.y - task.pickup.y);
    const etaMs = Math.ceil((metres / this.speed + (2 * this.speed) / ACCEL_MPS2) * 1000) + HANDLING_MS;
    const price = 150 + Math.ceil(250 * (metres / 1000) + 10 * task.payload_kg * (metres / 1000));
    if (task.payload_kg > this.capacity || price > task.max_price || now + etaMs > task.deadline) {
      say({ event: "pass", task: task.id });
      return;
    }
    const wire = this.publish("bid", { task: task.id, price, currency: task.currency, eta_ms: etaMs });
    this.offers.set(task.id, { body: task, bidHash: sha256(wire).toString("hex"), at: now });
    say({ event: "bid", task: task.id, price, eta_ms: etaMs });
  }

  awarded(award) {
    const offer = this.offers.get(award.task);
    this.offers.delete(award.task); // won by this robot or another: the bid is spent either way
    if (award.robot !== this.did) return;
    let why = null;
    if (!offer) why = "no open bid of this robot for it (or the award was used)";
    else if (sha256(jcs(offer.body)).toString("hex") !== award.task_hash) why = "task_hash is not the task bid for";
    else if (offer.bidHash !== award.bid_hash) why = "bid_hash is not this robot's bid";
    else if (this.task) why = "busy";
    if (why) { // declined: the task goes back on offer, nobody is slashed
      this.publish("event", { t: Date.now(), type: "command.rejected", task: award.task,
        detail: { command: "award", why } });
      say({ event: "award", task: award.task, taken: false, why });
      return;
    }
    const { pickup, dropoff } = offer.body;
    this.task = { body: offer.body, legs: [{ ...pickup, state: "to_pickup" }, { ...dropoff, state: "to_dropoff" }] };
    this.offers.clear(); // a robot at work is not awarded more (the market skips busy robots' bids)
    this.publish("event", { t: Date.now(), type: "task.to_pickup", task: award.task });
    say({ event: "award", task: award.task, taken: true, price: award.price });
  }

  // Move on by the time since the last call, speeding up and braking at ACCEL_MPS2 at most (the fleet
  // refuses telemetry whose speed changes faster than 3.75 m/s² as implausible), in small steps so it
  // brakes in time; at a leg's end, say so.
  advance() {
    const now = Date.now();
    let dt = (now - this.at) / 1000;
    this.at = now;
    while (dt > 1e-6 && !this.arrived) {
      const step = Math.min(dt, 0.02);
      dt -= step;
      this.#move(step);
    }
  }

  #move(dt) {
    const leg = this.task?.legs[0];
    if (!leg) {
      this.v = Math.max(0, this.v - ACCEL_MPS2 * dt);
      return;
    }
    const dx = leg.x - this.x;
    const dy = leg.y - this.y;
    const left = Math.hypot(dx, dy);
    if (left > 1e-9) this.theta = Math.atan2(dy, dx);
    const brake = Math.max(MIN_SPEED_MPS, Math.sqrt(2 * ACCEL_MPS2 * left)); // so as to stop at the end
    const v = Math.max(this.v - ACCEL_MPS2 * dt, Math.min(this.speed, brake, this.v + ACCEL_MPS2 * dt));
    const step = ((this.v + v) / 2) * dt;
    this.v = v;
    if (step < left) {
      this.x += (dx / left) * step;
      this.y += (dy / left) * step;
      return;
    }
    this.x = leg.x;
    this.y = leg.y;
    this.arrived = leg.state;
  }

  // After telemetry put the robot at a leg's end: the task's next step.
  settle() {
    const state = this.arrived;
    this.arrived = null;
    if (!state || !this.task) return;
    const id = this.task.body.id;
    if (state === "to_pickup") {
      this.load = this.task.body.payload_kg;
      this.publish("event", { t: Date.now(), type: "task.loaded", task: id });
      this.publish("event", { t: Date.now(), type: "task.to_dropoff", task: id });
      this.task.legs.shift();
      return;
    }
    this.load = 0;
    this.publish("event", { t: Date.now(), type: "task.delivered", task: id });
    this.publish("receipt", { task: id, t: Date.now(), pose: { theta: this.theta, x: this.x, y: this.y } });
    this.delivered.push(id);
    this.task = null;
    say({ event: "delivered", task: id });
  }
}

// The task id an announcement claims (unverified: only to skip what needs no decision).
function peekId(payload) {
  try {
    return JSON.parse(payload.toString("utf8"))?.body?.id ?? null;
  } catch {
    return null;
  }
}

async function run(config) {
  let { document } = config;
  let fleet = null;
  if (config.fleet) {
    fleet = await joinFleet(config);
    document = fleet.document;
    say({ event: "operator", did: fleet.operator, pinned: fleet.pinned });
    say({ event: "fleet", market: fleet.market, broker: fleet.broker, tls: fleet.broker.startsWith("mqtts:") });
  }
  if (document === null) {
    const partition = createHash("sha256").update(config.did, "utf8").digest("hex")[0];
    document = minimalDocument(config.did, config.publicKey, `depai/v1/robots/${partition}/${config.address}`);
    say({ event: "warning", message: "DEPAI_DOCUMENT not given: the birth carries a minimal unsigned document and "
      + "the topic root is computed" });
  }
  const root = topicRootOf(document);
  if (!root) throw new ConfigError("the DID document has no MQTTTopicRoot service");
  const kid = config.kid ?? fleet?.kid ?? document.verificationMethod?.[0]?.id?.split("#")[1] ?? "key-1";
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
    birth = sign("birth", { document, epoch, software: "depai-js-robot 1.1.0" }, { seq: epoch });
    const will = sign("death", { epoch, reason: "will" }, { ttlMs: 3600000 });
    return { topic: `${root}/death`, payload: will.wire, qos: 1, retain: true };
  };

  const broker = fleet?.broker ?? config.broker;
  const tls = broker.startsWith("mqtts:");
  if (config.caFile && !tls) throw new ConfigError(`DEPAI_CA_FILE given, but ${broker} is not mqtts://`);
  if (fleet && !tls) say({ event: "warning", message: `${broker} is not TLS: the password crosses the network in clear` });
  const client = mqtt.connect(broker, {
    protocolVersion: 4, clean: false, clientId: config.address, keepalive: 30,
    username: config.username, password: config.password, will: newSession(),
    reconnectPeriod: 1000, connectTimeout: 10000,
    ...(config.caFile ? { ca: readFileSync(config.caFile), rejectUnauthorized: true } : {}),
  });
  const publish = (kind, wire, seq, extra = {}) => {
    client.publish(`${root}/${kind}`, wire, { qos: 1, retain: false }, (err) => {
      if (err) say({ event: "error", message: `${kind} ${seq}: ${err.message}` });
      else say({ event: "sent", kind, seq, ...extra }); // acknowledged by the broker (PUBACK)
    });
  };

  const maxSpeed = Number(document.machine?.max_speed_mps ?? 1.5);
  const speed = fleet ? maxSpeed : Math.min(1.0, maxSpeed);
  const courier = fleet ? new Courier({
    did: config.did, x: config.x, y: config.y, speed, capacity: Number(document.machine?.payload_kg ?? 10),
    publish: (kind, body) => { const { seq, wire } = sign(kind, body); publish(kind, wire, seq); return wire; },
  }) : null;

  // Telemetry at 2 Hz: on the marketplace, where its task takes it; else a straight line along +x.
  let born = false; // a birth of this connection was acknowledged
  let t0 = null; // when it started moving
  let samples = 0;
  let battery = 0.9;
  const sent = [];
  const telemetry = () => {
    if (!born) return; // nothing but the birth until its PUBACK, and nothing while offline
    samples += 1;
    const t = Date.now();
    battery = Math.round((battery - 0.001) * 1000) / 1000;
    let body;
    if (courier) {
      courier.advance();
      body = {
        t, pose: { x: courier.x, y: courier.y, theta: courier.theta }, twist: { v: courier.v, w: 0 }, battery,
        state: courier.state, load_kg: courier.load, ...(courier.task ? { task: courier.task.body.id } : {}),
      };
    } else {
      const travelled = (speed * (t - t0)) / 1000;
      body = {
        t, pose: { x: config.x + travelled, y: config.y, theta: 0 }, twist: { v: speed, w: 0 },
        battery, odometer_m: travelled, state: "idle", // no task, no goto command: "idle" by the docs' rule
      };
    }
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
    courier?.settle(); // after the telemetry that shows it there: events, receipt
  };

  // What the marketplace says: verified before anything is done with it, refusals counted by code.
  const replay = new ReplayWindow();
  const refused = {};
  const hear = async (topic, payload) => {
    const kind = topic === MARKET_TASKS ? "task" : "award";
    try {
      const envelope = await openEnvelope(payload, fleet.resolver, { kinds: [kind], replay });
      if (envelope.iss !== fleet.market) throw new Refused("untrusted_sender", `${envelope.iss} is not the market`);
      const task = envelope.body.id ?? envelope.body.task;
      if (kind === "award" || !courier.seen.has(task)) say({ event: "verified", kind, kid: envelope.kid, task });
      if (kind === "task") courier.consider(envelope.body);
      else courier.awarded(envelope.body);
    } catch (err) {
      refused[err.code ?? "error"] = (refused[err.code ?? "error"] ?? 0) + 1;
      say({ event: "refused", kind, code: err.code ?? "error", message: err.message });
    }
  };
  let queue = Promise.resolve(); // one at a time, in arrival order

  // A reconnect is a new session: new birth, new epoch, new will (mqtt.js reads options.will at each CONNECT).
  client.on("reconnect", () => { client.options.will = newSession(); });
  client.on("close", () => { born = false; });
  client.on("offline", () => say({ event: "offline" }));
  client.on("error", (err) => say({ event: "error", message: err.message }));
  client.on("message", (topic, payload) => {
    if (fleet && (topic === MARKET_TASKS || topic === MARKET_AWARDS)) {
      // The marketplace announces every open task again every few seconds: one this robot has decided
      // on already, or any while it is at work, is dropped unread (nothing is done with it, so there is
      // nothing to verify), which keeps a busy market from starving the robot's own clock.
      if (topic === MARKET_TASKS && (courier.task || courier.seen.has(peekId(payload)))) return;
      queue = queue.then(() => hear(topic, payload));
      return;
    }
    // Commands are not obeyed: this robot only takes work from the marketplace.
    say({ event: "command", topic, bytes: payload.length, acted: false });
  });
  client.on("connect", async () => {
    say({ event: "connected", ...(tls ? { tls } : {}) });
    try {
      await client.subscribeAsync(`${root}/cmd`, { qos: 1 });
      if (fleet) await client.subscribeAsync([MARKET_TASKS, MARKET_AWARDS], { qos: 1 });
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

  // Run for DEPAI_SECONDS, until DEPAI_TASKS are delivered, or until SIGINT / SIGTERM; then "Shutting down".
  await new Promise((resolve) => {
    const finish = () => { clearTimeout(stop); clearInterval(enough); resolve(); };
    const stop = setTimeout(finish, config.seconds * 1000);
    const enough = setInterval(() => { if (courier && courier.delivered.length >= config.tasks) finish(); }, 200);
    for (const signal of ["SIGINT", "SIGTERM"]) process.once(signal, finish);
  });
  clearInterval(timer);
  await queue;
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
  if (courier) say({ event: "summary", delivered: courier.delivered, refused, resolver_fetches: fleet.resolver.fetches });
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
