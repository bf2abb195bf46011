// Signed envelopes in the browser, byte for byte as identity/envelope.py seals them, and the hashing they need.

const DOMAIN = "depai/envelope/v1";
const TTL_MS = 60000;
const PKCS8_ED25519_PREFIX = "302e020100300506032b657004220420"; // RFC 8410 PrivateKeyInfo around a 32-byte seed
const utf8 = new TextEncoder();

/** RFC 8785 canonical JSON of objects, arrays, strings, integers, booleans and null. */
export function canonicalJSON(value) {
  if (value === null || typeof value === "boolean" || typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new TypeError(`${value} is not an integer; signed messages carry whole numbers only`);
    return String(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJSON).join(",")}]`;
  if (typeof value === "object") {
    // Default sort compares UTF-16 code units, the order RFC 8785 asks for.
    const members = Object.keys(value).sort().map((key) => `${JSON.stringify(key)}:${canonicalJSON(value[key])}`);
    return `{${members.join(",")}}`;
  }
  throw new TypeError(`a ${typeof value} cannot be written as JSON`);
}

export function hexToBytes(hex) {
  if (!/^([0-9a-fA-F]{2})*$/.test(hex)) throw new Error(`"${hex}" is not hexadecimal`);
  return Uint8Array.from(hex.match(/../g) ?? [], (pair) => parseInt(pair, 16));
}

export function bytesToHex(bytes) {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

export function concatBytes(...parts) {
  const out = new Uint8Array(parts.reduce((size, part) => size + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function subtle() {
  if (!globalThis.crypto?.subtle) throw new Error("WebCrypto is unavailable: open the dashboard over https or on localhost");
  return crypto.subtle;
}

export async function sha256(bytes) {
  return new Uint8Array(await subtle().digest("SHA-256", bytes));
}

function base64url(bytes) {
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

async function importSeed(seedHex) {
  if (!/^[0-9a-fA-F]{64}$/.test(seedHex)) throw new Error("the private key seed must be 64 hexadecimal characters");
  try {
    return await subtle().importKey("pkcs8", hexToBytes(PKCS8_ED25519_PREFIX + seedHex), { name: "Ed25519" }, false, ["sign"]);
  } catch (err) {
    throw new Error(`this browser could not load an Ed25519 key (${err.message})`);
  }
}

let lastSeq = 0;

/** Microseconds since the epoch, strictly increasing within this page. */
function nextSeq() {
  lastSeq = Math.max(Date.now() * 1000, lastSeq + 1);
  return lastSeq;
}

/** The wire text of an envelope of ``kind`` carrying ``body``, signed by the key with seed ``seedHex`` as ``did``. */
export async function sealEnvelope({ seedHex, did, kind, body, nowMs = Date.now(), seq = nextSeq() }) {
  const key = await importSeed(seedHex);
  const unsigned = { body, exp: nowMs + TTL_MS, iat: nowMs, iss: did, kid: "key-1", kind, seq, v: 1 };
  const digest = await sha256(concatBytes(
    utf8.encode(DOMAIN), [0], utf8.encode(kind), [0], utf8.encode(canonicalJSON(unsigned)),
  ));
  const signature = new Uint8Array(await subtle().sign({ name: "Ed25519" }, key, digest));
  return canonicalJSON({ ...unsigned, sig: base64url(signature) });
}
