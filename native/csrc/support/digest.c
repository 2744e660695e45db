/*
 * digest.c - CRC-32 and the state digest's records (see include/rctc_digest.h, docs/digest.md).
 *
 * CRC-32 is computed four bits at a time from a 16-entry table (64 bytes of flash on a
 * microcontroller) and equals zlib's crc32 for every input (tested against Python's zlib).
 * Header fields are serialised byte by byte in little-endian order, so the digest does not
 * depend on the host's byte order; element data is byte-swapped on a big-endian host.
 *
 * Needs: <stdint.h>, <stddef.h>. Leaves: no state, no libc calls.
 */
#include "rctc_digest.h"

/* crc32 of a 4-bit value under the reflected polynomial 0xEDB88320 */
static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
    0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu, 0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

/* The raw (uninverted) register update for one byte. */
static uint32_t crc_byte(uint32_t reg, uint8_t byte)
{
    reg ^= byte;
    reg = (reg >> 4) ^ crc_nibble[reg & 15u];
    reg = (reg >> 4) ^ crc_nibble[reg & 15u];
    return reg;
}

uint32_t rctc_crc32(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = (const uint8_t *)data;
    uint32_t reg = ~crc;
    size_t i;
    for (i = 0; i < len; ++i) {
        reg = crc_byte(reg, p[i]);
    }
    return ~reg;
}

size_t rctc_digest_dtype_size(uint32_t dtype)
{
    switch (dtype) {
    case RCTC_DTYPE_UINT8:
    case RCTC_DTYPE_INT8:
    case RCTC_DTYPE_BOOL:
        return 1u;
    case RCTC_DTYPE_UINT16:
    case RCTC_DTYPE_INT16:
    case RCTC_DTYPE_FLOAT16:
        return 2u;
    case RCTC_DTYPE_FLOAT32:
    case RCTC_DTYPE_INT32:
    case RCTC_DTYPE_UINT32:
        return 4u;
    case RCTC_DTYPE_INT64:
    case RCTC_DTYPE_FLOAT64:
    case RCTC_DTYPE_UINT64:
        return 8u;
    default:
        return 0u;
    }
}

static uint32_t crc_u32le(uint32_t crc, uint32_t v)
{
    uint8_t b[4];
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
    b[2] = (uint8_t)(v >> 16);
    b[3] = (uint8_t)(v >> 24);
    return rctc_crc32(crc, b, 4u);
}

static int host_is_little_endian(void)
{
    const uint16_t one = 1u;
    return *(const uint8_t *)&one == 1u;
}

int rctc_digest_record(uint32_t *crc, const char *name, uint32_t dtype, uint32_t ndim, const uint32_t *dims,
                       int32_t exponent, const void *data)
{
    const size_t esize = rctc_digest_dtype_size(dtype);
    size_t n = 1u;
    uint32_t reg;
    uint32_t c;
    uint32_t i;

    if (crc == NULL || name == NULL || name[0] == '\0' || esize == 0u || (ndim != 0u && dims == NULL)) {
        return -1;
    }
    for (i = 0; i < ndim; ++i) {
        n *= (size_t)dims[i];
    }
    if (n != 0u && data == NULL) {
        return -1;
    }
    reg = ~*crc; /* the name and its NUL, byte by byte (no strlen: no libc) */
    do {
        reg = crc_byte(reg, (uint8_t)*name);
    } while (*name++ != '\0');
    c = ~reg;
    c = crc_u32le(c, dtype);
    c = crc_u32le(c, ndim);
    for (i = 0; i < ndim; ++i) {
        c = crc_u32le(c, dims[i]);
    }
    c = crc_u32le(c, (uint32_t)exponent); /* two's complement: the i32 LE bytes */
    if (esize == 1u || host_is_little_endian()) {
        c = rctc_crc32(c, data, n * esize);
    } else {
        const uint8_t *p = (const uint8_t *)data;
        size_t k;
        for (k = 0; k < n; ++k, p += esize) {
            size_t b = esize;
            reg = ~c;
            while (b-- != 0u) {
                reg = crc_byte(reg, p[b]);
            }
            c = ~reg;
        }
    }
    *crc = c;
    return 0;
}

void rctc_digest_hex(uint32_t crc, char out[9])
{
    static const char hex[] = "0123456789abcdef";
    int i;
    for (i = 7; i >= 0; --i) {
        out[i] = hex[crc & 15u];
        crc >>= 4;
    }
    out[8] = '\0';
}
