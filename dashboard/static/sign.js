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

// --- the member's key, kept in this browser ------------------------------------------------------------
//
// A key file is imported once and kept in IndexedDB. Where WebCrypto has Ed25519, the seed becomes a
// non-extractable CryptoKey: the page can sign with it but no script can read it back. Where it has not, the
// vendored @noble/ed25519 signs instead, and the seed itself is kept in IndexedDB as bytes (the page says so).

const NOBLE = "/static/vendor/noble-ed25519/index.js";
const DB_NAME = "depai-keys";
const STORE = "keys";
const SLOT = "member"; // one member key per browser profile and dashboard origin

async function noble() {
  const ed = await import(NOBLE);
  ed.etc.sha512Async ??= async (...parts) => new Uint8Array(await subtle().digest("SHA-512", concatBytes(...parts)));
  return ed;
}

/** Whether this browser's WebCrypto signs with Ed25519 (else the noble fallback does). */
export async function webCryptoEd25519() {
  try {
    await subtle().importKey("pkcs8", hexToBytes(PKCS8_ED25519_PREFIX + "00".repeat(32)), { name: "Ed25519" }, false,
      ["sign"]);
    return true;
  } catch {
    return false;
  }
}

const ARGON2 = "/static/vendor/hash-wasm/argon2.umd.min.js"; // sets globalThis.hashwasm
const NACL = "/static/vendor/tweetnacl/nacl.min.js"; // sets self.nacl
// What identity/keystore.py writes: 16-byte salt; 24-byte nonce + 16-byte Poly1305 tag + the 32-byte seed.
const SALT_SIZE = 16;
const CIPHERTEXT_SIZE = 24 + 16 + 32;
// Argon2id cost a key file may ask for here: libsodium's minimum up to its MODERATE limits (the keystore writes
// INTERACTIVE, 2 passes over 64 MiB). A file asking for more is refused rather than left to hang the tab.
const OPSLIMIT = [1, 3];
const MEMLIMIT = [8192, 256 * 1024 * 1024];

function base64Field(record, field, size) {
  let bytes = null;
  try {
    bytes = typeof record[field] === "string" ? Uint8Array.from(atob(record[field]), (c) => c.charCodeAt(0)) : null;
  } catch {
    bytes = null;
  }
  if (bytes?.length !== size) {
    throw new Error(`the key file's ${field} is not ${size} bytes of base64: the file is damaged`);
  }
  return bytes;
}

function costField(record, field, [low, high]) {
  const value = record[field];
  if (!Number.isSafeInteger(value) || value < low || value > high) {
    throw new Error(`the key file asks for an Argon2id ${field} of ${value}, outside what this page accepts ` +
      `(${low} to ${high}): it is not a file depai wrote with its usual cost`);
  }
  return value;
}

/**
 * The seed, public key and DID in a key file: the one `depai id new NAME --plain` writes (depai-keystore, kdf
 * "none"), or a fleet's identities.json (then the entry ``name``). For the encrypted key file `depai id new NAME`
 * writes by default (kdf "argon2id"), the seed is still locked: ``encrypted`` holds its Argon2id cost, salt and
 * ciphertext, for unlockKeyFile() with the passphrase.
 */
export function parseKeyFile(text, name) {
  let record;
  try {
    record = JSON.parse(text);
  } catch {
    throw new Error("this is not a key file: it is not JSON");
  }
  if (record?.format === "depai-keystore") {
    if (record.version !== 1) throw new Error(`key file version ${record.version} is not known here (only 1)`);
    const publicKeyHex = /^[0-9a-f]{64}$/.test(record.public_key ?? "") ? record.public_key : null;
    if (record.kdf === "argon2id") {
      if (!publicKeyHex) throw new Error("the key file records no public key: the file is damaged");
      const encrypted = {
        opslimit: costField(record, "opslimit", OPSLIMIT),
        memlimit: costField(record, "memlimit", MEMLIMIT),
        salt: base64Field(record, "salt", SALT_SIZE),
        ciphertext: base64Field(record, "ciphertext", CIPHERTEXT_SIZE),
      };
      return { encrypted, publicKeyHex, did: record.did ?? null };
    }
    if (record.kdf !== "none" || !/^[0-9a-f]{64}$/.test(record.seed ?? "")) {
      throw new Error("the key file holds no seed");
    }
    return { seedHex: record.seed, publicKeyHex, did: record.did ?? null };
  }
  if (record && typeof record === "object" && !Array.isArray(record)) { // a fleet's identities.json
    if (!name) throw new Error("choose the member whose key this identities.json holds");
    const entry = record[name];
    const seedHex = typeof entry === "string" ? entry : entry?.seed;
    if (!/^[0-9a-f]{64}$/.test(seedHex ?? "")) throw new Error(`this identities.json has no key for ${name}`);
    return { seedHex, publicKeyHex: null, did: typeof entry === "object" ? entry.did ?? null : null };
  }
  throw new Error("this is not a depai key file (format depai-keystore) nor a fleet's identities.json");
}

/**
 * Open an encrypted key file (parseKeyFile's ``encrypted``) with its passphrase, as identity/keystore.py does:
 * Argon2id (libsodium's crypto_pwhash: one lane, ``opslimit`` passes over ``memlimit`` bytes, a 32-byte key) from
 * the passphrase and salt, then XSalsa20-Poly1305 (NaCl's secretbox) over the ciphertext (nonce first). Returns
 * ``parsed`` with the 32-byte ``seed`` (bytes, which importKey zeroes once kept). A wrong passphrase throws and
 * nothing is kept. The passphrase's bytes and the derived key are zeroed here; the string itself is the caller's.
 */
export async function unlockKeyFile(parsed, passphrase) {
  const { opslimit, memlimit, salt, ciphertext } = parsed.encrypted;
  if (!passphrase) throw new Error("this key file is encrypted: type its passphrase");
  await Promise.all([import(ARGON2), import(NACL)]);
  const password = utf8.encode(passphrase);
  let key = null;
  try {
    key = await globalThis.hashwasm.argon2id({
      password, salt, parallelism: 1, iterations: opslimit, memorySize: Math.floor(memlimit / 1024),
      hashLength: 32, outputType: "binary",
    });
    const seed = globalThis.nacl.secretbox.open(ciphertext.subarray(24), ciphertext.subarray(0, 24), key);
    if (!seed) throw new Error("wrong passphrase: the key file did not open with it, and no key was kept");
    return { seed, publicKeyHex: parsed.publicKeyHex, did: parsed.did };
  } finally {
    password.fill(0);
    key?.fill(0);
  }
}

function openStore() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function storeCall(mode, call) {
  const db = await openStore();
  try {
    return await new Promise((resolve, reject) => {
      const request = call(db.transaction(STORE, mode).objectStore(STORE));
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  } finally {
    db.close();
  }
}

/**
 * Keep the key of ``parsed`` (from parseKeyFile, or unlockKeyFile for an encrypted file) for the member ``did``: a
 * non-extractable WebCrypto key where Ed25519 is supported, else the seed for the noble fallback. The seed's bytes
 * in memory are zeroed once kept. Returns what keptKey() returns.
 */
export async function importKey(parsed, did) {
  const seed = parsed.seed ?? hexToBytes(parsed.seedHex);
  const pkcs8 = concatBytes(hexToBytes(PKCS8_ED25519_PREFIX), seed);
  try {
    const ed = await noble();
    const publicKeyHex = bytesToHex(await ed.getPublicKeyAsync(seed));
    if (parsed.publicKeyHex && parsed.publicKeyHex !== publicKeyHex) {
      throw new Error("the key file's public key does not match its seed: the file is damaged");
    }
    const record = { did: parsed.did ?? did, publicKeyHex, importedAt: Date.now() };
    try {
      record.key = await subtle().importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"]);
      record.kind = "webcrypto";
    } catch {
      record.seed = seed.slice(); // this browser's WebCrypto has no Ed25519: noble signs, with the seed kept as bytes
      record.kind = "noble";
    }
    await storeCall("readwrite", (store) => store.put(record, SLOT));
    record.seed?.fill(0); // IndexedDB keeps its own copy
  } finally {
    seed.fill(0);
    pkcs8.fill(0);
  }
  return keptKey();
}

/** The member key this browser keeps, without its secret: {did, publicKeyHex, kind, importedAt}, or null. */
export async function keptKey() {
  const record = await storeCall("readonly", (store) => store.get(SLOT));
  if (!record) return null;
  const { did, publicKeyHex, kind, importedAt } = record;
  return { did, publicKeyHex, kind, importedAt, extractable: kind === "webcrypto" ? record.key.extractable : true };
}

/** Forget the kept key: nothing of it stays in this browser. */
export async function forgetKey() {
  await storeCall("readwrite", (store) => store.delete(SLOT));
}

async function signDigest(digest) {
  const record = await storeCall("readonly", (store) => store.get(SLOT));
  if (!record) throw new Error("no member key in this browser: import your key file first");
  if (record.kind === "webcrypto") {
    return { did: record.did, signature: new Uint8Array(await subtle().sign({ name: "Ed25519" }, record.key, digest)) };
  }
  const ed = await noble();
  return { did: record.did, signature: await ed.signAsync(digest, record.seed) };
}

let lastSeq = 0;

/** Microseconds since the epoch, strictly increasing within this page. */
function nextSeq() {
  lastSeq = Math.max(Date.now() * 1000, lastSeq + 1);
  return lastSeq;
}

/** The wire text of an envelope of ``kind`` carrying ``body``, signed with the kept member key as its DID. */
export async function sealEnvelope({ kind, body, nowMs = Date.now(), seq = nextSeq() }) {
  const { did } = (await keptKey()) ?? {};
  if (!did) throw new Error("no member key in this browser: import your key file first");
  const unsigned = { body, exp: nowMs + TTL_MS, iat: nowMs, iss: did, kid: "key-1", kind, seq, v: 1 };
  const digest = await sha256(concatBytes(
    utf8.encode(DOMAIN), [0], utf8.encode(kind), [0], utf8.encode(canonicalJSON(unsigned)),
  ));
  const { signature } = await signDigest(digest);
  return canonicalJSON({ ...unsigned, sig: base64url(signature) });
}
