// OpenSSL's libcrypto (Debian's libssl-dev): only the one-shot SHA-256 digest the gateway needs.
#include <stddef.h>
#include <openssl/evp.h>

// 1 when `out` (32 bytes) holds the SHA-256 digest of `count` bytes at `data`.
static inline int fusion_sha256(const void *data, size_t count, unsigned char *out) {
    unsigned int length = 0;
    return EVP_Digest(data, count, out, &length, EVP_sha256(), NULL) == 1 && length == 32;
}
