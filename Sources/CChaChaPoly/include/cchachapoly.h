// ChaCha20-Poly1305 (RFC 8439) that seals and opens in the caller's memory.
// It is the BoringSSL that swift-crypto already builds and links into Skiff
// (its functions carry swift-crypto's symbol prefix `CCryptoBoringSSL_`):
// swift-crypto's Swift API allocates and copies twice per message, which cost
// a quarter of the encrypted stream's CPU (docs/migration-security.md, Cost).
// The key schedule is set up once per direction, not once per message.
#ifndef CCHACHAPOLY_H
#define CCHACHAPOLY_H

#include <stddef.h>
#include <stdint.h>

#define CCHACHAPOLY_KEY_LENGTH 32
#define CCHACHAPOLY_TAG_LENGTH 16

typedef struct cchachapoly cchachapoly;

// A context for `key` (32 bytes); NULL if BoringSSL refuses (out of memory).
cchachapoly *cchachapoly_new(const uint8_t *key);
void cchachapoly_free(cchachapoly *ctx);

// Seals `length` bytes from `in` under the Noise nonce `counter` (32 zero bits,
// then the counter little-endian) and empty associated data; writes ciphertext
// then the 16-byte tag to `out` (`length` + 16 bytes). `in` and `out` may be the
// same buffer, not otherwise overlap. Returns 1, or 0 on failure.
int cchachapoly_seal(const cchachapoly *ctx, uint64_t counter, uint8_t *out, const uint8_t *in, size_t length);

// Opens `length` bytes of ciphertext at `in` with the tag at `tag`, writing
// `length` bytes of plaintext to `out` (which may be `in`). Returns 1 if the
// tag is right; 0 otherwise, and then `out` holds garbage the caller must not use.
int cchachapoly_open(const cchachapoly *ctx, uint64_t counter, uint8_t *out, const uint8_t *in, size_t length,
                     const uint8_t *tag);

#endif
