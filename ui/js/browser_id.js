// Mint this browser's id before Gradio's first event. A fresh visitor's gr.BrowserState is otherwise empty until a
// load event returns, and anything sent before that had no identity. Runs from launch(head=...), which Gradio
// inserts before it mounts the components; the BrowserState then reads the id from localStorage when it mounts.
// Gradio stores the value as "<base64 iv>:<CryptoJS AES passphrase output>" (OpenSSL "Salted__" format, key and iv
// from EVP_BytesToKey(MD5)); the server derives that key and iv (ui/identity.py), so all this does is AES-256-CBC.
// Synchronous on purpose: it must finish before the BrowserState mounts, and crypto.subtle is async (and absent on
// plain-http pages other than localhost).
(function mintBrowserId(c) {
  "use strict";
  try {
    if (!window.crypto || !window.localStorage || localStorage.getItem(c.storage_key)) return;
  } catch (e) {
    return; // storage blocked: the chat tab's load event mints the id as before
  }
  const hex = (h) => Uint8Array.from(h.match(/../g), (x) => parseInt(x, 16));
  const b64 = (u8) => btoa(String.fromCharCode.apply(null, Array.from(u8)));
  const xt = (a) => ((a << 1) ^ ((a >> 7) * 0x11b)) & 0xff; // multiply by x in GF(2^8)

  // The AES S-box, built from its definition (multiplicative inverse, then the affine map).
  const sbox = new Uint8Array(256);
  for (let p = 1, q = 1, first = true; first || p !== 1; first = false) {
    p = p ^ xt(p); // p *= 3
    q ^= q << 1; q ^= q << 2; q ^= q << 4; q &= 0xff; if (q & 0x80) q ^= 0x09; // q /= 3
    const r = (v, s) => ((v << s) | (v >> (8 - s))) & 0xff;
    sbox[p] = q ^ r(q, 1) ^ r(q, 2) ^ r(q, 3) ^ r(q, 4) ^ 0x63;
  }
  sbox[0] = 0x63;

  // AES-256 key schedule: 15 round keys of 16 bytes.
  const key = hex(c.key);
  const w = new Uint8Array(240);
  w.set(key);
  for (let i = 32, rcon = 1; i < 240; i += 4) {
    let t = w.slice(i - 4, i);
    if (i % 32 === 0) {
      t = Uint8Array.of(sbox[t[1]] ^ rcon, sbox[t[2]], sbox[t[3]], sbox[t[0]]);
      rcon = xt(rcon);
    } else if (i % 32 === 16) {
      t = t.map((v) => sbox[v]);
    }
    for (let j = 0; j < 4; j++) w[i + j] = w[i - 32 + j] ^ t[j];
  }

  function encryptBlock(input) {
    let s = input.map((v, i) => v ^ w[i]);
    for (let round = 1; round <= 14; round++) {
      const t = new Uint8Array(16);
      for (let col = 0; col < 4; col++) for (let row = 0; row < 4; row++) t[col * 4 + row] = sbox[s[((col + row) % 4) * 4 + row]];
      if (round < 14) {
        for (let col = 0; col < 16; col += 4) {
          const [a0, a1, a2, a3] = t.slice(col, col + 4);
          const all = a0 ^ a1 ^ a2 ^ a3;
          t[col] ^= all ^ xt(a0 ^ a1);
          t[col + 1] ^= all ^ xt(a1 ^ a2);
          t[col + 2] ^= all ^ xt(a2 ^ a3);
          t[col + 3] ^= all ^ xt(a3 ^ a0);
        }
      }
      s = t.map((v, i) => v ^ w[round * 16 + i]);
    }
    return s;
  }

  function encryptCbc(plain) {
    const pad = 16 - (plain.length % 16);
    const data = new Uint8Array(plain.length + pad).fill(pad);
    data.set(plain);
    const out = new Uint8Array(data.length);
    let prev = hex(c.iv);
    for (let i = 0; i < data.length; i += 16) {
      prev = encryptBlock(data.slice(i, i + 16).map((v, j) => v ^ prev[j]));
      out.set(prev, i);
    }
    return out;
  }

  // 18 random bytes = 24 base64url characters, the shape ui/identity.py accepts (as secrets.token_urlsafe(18)).
  const id = b64(crypto.getRandomValues(new Uint8Array(18))).replace(/\+/g, "-").replace(/\//g, "_");
  const plain = new TextEncoder().encode(JSON.stringify(id));
  const body = new Uint8Array(16 + plain.length + 16);
  const sealed = encryptCbc(plain);
  body.set(new TextEncoder().encode("Salted__"));
  body.set(hex(c.salt), 8);
  body.set(sealed, 16);
  const stored = b64(crypto.getRandomValues(new Uint8Array(16))) + ":" + b64(body.slice(0, 16 + sealed.length));
  if (c.test) return { id: id, stored: stored }; // tests/app/test_shell_browser.py checks the cipher against Python's
  localStorage.setItem(c.storage_key, stored);
})
