#include "cchachapoly.h"

// BoringSSL's AEAD interface (include/openssl/aead.h), as swift-crypto builds
// it: the same functions under its prefix. Only pointers cross, so the opaque
// types need no layout here.
struct evp_aead_st;
struct evp_aead_ctx_st;
extern const struct evp_aead_st *CCryptoBoringSSL_EVP_aead_chacha20_poly1305(void);
extern struct evp_aead_ctx_st *CCryptoBoringSSL_EVP_AEAD_CTX_new(const struct evp_aead_st *aead, const uint8_t *key,
                                                                 size_t key_len, size_t tag_len);
extern void CCryptoBoringSSL_EVP_AEAD_CTX_free(struct evp_aead_ctx_st *ctx);
extern int CCryptoBoringSSL_EVP_AEAD_CTX_seal_scatter(const struct evp_aead_ctx_st *ctx, uint8_t *out, uint8_t *out_tag,
                                                      size_t *out_tag_len, size_t max_out_tag_len, const uint8_t *nonce,
                                                      size_t nonce_len, const uint8_t *in, size_t in_len,
                                                      const uint8_t *extra_in, size_t extra_in_len, const uint8_t *ad,
                                                      size_t ad_len);
extern int CCryptoBoringSSL_EVP_AEAD_CTX_open_gather(const struct evp_aead_ctx_st *ctx, uint8_t *out,
                                                     const uint8_t *nonce, size_t nonce_len, const uint8_t *in,
                                                     size_t in_len, const uint8_t *in_tag, size_t in_tag_len,
                                                     const uint8_t *ad, size_t ad_len);

cchachapoly *cchachapoly_new(const uint8_t *key) {
    return (cchachapoly *)CCryptoBoringSSL_EVP_AEAD_CTX_new(CCryptoBoringSSL_EVP_aead_chacha20_poly1305(), key,
                                                           CCHACHAPOLY_KEY_LENGTH, CCHACHAPOLY_TAG_LENGTH);
}

void cchachapoly_free(cchachapoly *ctx) {
    CCryptoBoringSSL_EVP_AEAD_CTX_free((struct evp_aead_ctx_st *)ctx);
}

static void noise_nonce(uint64_t counter, uint8_t nonce[12]) {
    for (int i = 0; i < 4; i++) nonce[i] = 0;
    for (int i = 0; i < 8; i++) nonce[4 + i] = (uint8_t)(counter >> (8 * i));
}

int cchachapoly_seal(const cchachapoly *ctx, uint64_t counter, uint8_t *out, const uint8_t *in, size_t length) {
    uint8_t nonce[12];
    noise_nonce(counter, nonce);
    size_t tag_length = 0;
    int ok = CCryptoBoringSSL_EVP_AEAD_CTX_seal_scatter((const struct evp_aead_ctx_st *)ctx, out, out + length,
                                                        &tag_length, CCHACHAPOLY_TAG_LENGTH, nonce, sizeof nonce, in,
                                                        length, NULL, 0, NULL, 0);
    return ok == 1 && tag_length == CCHACHAPOLY_TAG_LENGTH;
}

int cchachapoly_open(const cchachapoly *ctx, uint64_t counter, uint8_t *out, const uint8_t *in, size_t length,
                     const uint8_t *tag) {
    uint8_t nonce[12];
    noise_nonce(counter, nonce);
    return CCryptoBoringSSL_EVP_AEAD_CTX_open_gather((const struct evp_aead_ctx_st *)ctx, out, nonce, sizeof nonce, in,
                                                     length, tag, CCHACHAPOLY_TAG_LENGTH, NULL, 0) == 1;
}
