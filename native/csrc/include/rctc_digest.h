/*
 * rctc_digest.h - the state digest: CRC-32 over one record per state tensor (docs/digest.md).
 *
 * The C twin of rctc/digest.py; both give the same value (tested). CRC-32 is IEEE 802.3 /
 * zlib's crc32 (reflected polynomial 0xEDB88320, initial value and final xor 0xFFFFFFFF), used
 * incrementally in zlib's convention: start from 0, feed bytes, the running value is the CRC.
 * A record is: name bytes and a NUL, u32 LE dtype code (ONNX TensorProto.DataType), u32 LE
 * ndim, ndim x u32 LE dims, i32 LE exponent (0 for none), then the data, each element little
 * endian. The digest feeds the records in ascending order of the names' bytes; ordering them is
 * the caller's job (the code generator knows the names when it writes the harness).
 *
 * Needs: a C99 compiler with <stdint.h> and <stddef.h> only (no libc calls). Leaves: pure
 * functions; no state, no allocation.
 */
#ifndef RCTC_DIGEST_H
#define RCTC_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* dtype codes of a record (ONNX TensorProto.DataType values) */
#define RCTC_DTYPE_FLOAT32 1u
#define RCTC_DTYPE_UINT8 2u
#define RCTC_DTYPE_INT8 3u
#define RCTC_DTYPE_UINT16 4u
#define RCTC_DTYPE_INT16 5u
#define RCTC_DTYPE_INT32 6u
#define RCTC_DTYPE_INT64 7u
#define RCTC_DTYPE_BOOL 9u
#define RCTC_DTYPE_FLOAT16 10u
#define RCTC_DTYPE_FLOAT64 11u
#define RCTC_DTYPE_UINT32 12u
#define RCTC_DTYPE_UINT64 13u

/* CRC-32 of data[0..len-1] continuing from crc (0 to start), as zlib's crc32(crc, data, len). */
uint32_t rctc_crc32(uint32_t crc, const void *data, size_t len);

/* Bytes per element of a dtype code; 0 for a code the digest does not define. */
size_t rctc_digest_dtype_size(uint32_t dtype);

/*
 * Feed one record into *crc: name (NUL-terminated, non-empty), dtype, ndim, dims[0..ndim-1],
 * exponent, then prod(dims) elements at data, stored in the host's byte order (converted to
 * little endian on a big-endian host). Returns 0, or -1 (and *crc untouched) for an unknown
 * dtype, a NULL or empty name, or NULL dims / data where they are needed.
 */
int rctc_digest_record(uint32_t *crc, const char *name, uint32_t dtype, uint32_t ndim, const uint32_t *dims,
                       int32_t exponent, const void *data);

/* The digest as 8 lowercase hex digits and a NUL, for harnesses without printf. */
void rctc_digest_hex(uint32_t crc, char out[9]);

#ifdef __cplusplus
}
#endif

#endif /* RCTC_DIGEST_H */
