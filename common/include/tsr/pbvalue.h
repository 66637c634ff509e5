/*
 * pbvalue.h — conversions between Tessera values (value.h) and tessera.v1.Value (protobuf-c),
 * and protobuf-c messages in arenas, for every RPC handler and client.
 *
 * Design:
 *   - Everything a conversion allocates lives in a caller's arena (protobuf-c structs, strings,
 *     value arrays), so a handler that resets its arena per call allocates nothing per call
 *     once the arena has grown. tsr_pb_allocator gives protobuf-c an arena-backed allocator
 *     for unpacking requests the same way (its free is a no-op).
 *   - Mapping: TSR_NULL <-> null_value (a Value with no kind set also reads as null), BOOL,
 *     LONG, DOUBLE, STRING <-> the scalar kinds, LIST <-> list_value, MAP <-> map_value (entries
 *     in the value's order). A map key that is not a string is rendered as its JSON text.
 */
#ifndef TSR_PBVALUE_H
#define TSR_PBVALUE_H

#include <protobuf-c/protobuf-c.h>

#include "tessera.pb-c.h"
#include "tsr/error.h"
#include "tsr/mem.h"
#include "tsr/value.h"

/* A protobuf-c allocator drawing from arena (free is a no-op). Fill *out; borrow arena. */
void tsr_pb_allocator(tsr_arena_t *arena, ProtobufCAllocator *out);

/* A new tessera.v1.Value holding v (deep copy, in arena). */
Tessera__V1__Value *tsr_pb_value_new(const tsr_value_t *v, tsr_arena_t *arena);

/* Reads a tessera.v1.Value (NULL reads as null) into *out; strings, lists and maps are copied
 * into arena. Returns 0, or TSR_EINVAL when it nests deeper than TSR_PB_MAX_DEPTH. */
#define TSR_PB_MAX_DEPTH 64
int tsr_pb_value_get(const Tessera__V1__Value *pv, tsr_arena_t *arena, tsr_value_t *out);

/* Unpacks a message of descriptor d from p[0..n) into arena (the request of a handler).
 * Returns it, or NULL with err = TSR_EINVAL "malformed <Message>" for bytes that are not one. */
void *tsr_pb_unpack(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n,
                    tsr_arena_t *arena, tsr_error_t *err);

/* How many times the length-delimited field `field` occurs at the top level of the message in
 * p[0..n), counted without decoding (varint, fixed and length-delimited fields are skipped):
 * a server's "rows in this request" before it decides where to run it. Stops at the first
 * malformed or unsupported (group) field, counting what came before. */
size_t tsr_pb_count_field(const uint8_t *p, size_t n, uint32_t field);

/* Serializes a message, appending to out. */
void tsr_pb_pack(const ProtobufCMessage *m, tsr_buf_t *out);

/* Direct encoding, for responses of thousands of values (FetchJoin): the bytes protobuf-c packs
 * for tsr_pb_value_new(v), without building the message. tsr_pb_value_size is the size of the
 * Value message's body; tsr_pb_value_write writes that body at p and returns p + size. Strings
 * are cut at their first NUL, as the C strings of tsr_pb_value_new are. Allocates nothing
 * (except for a map key that is not a string: rendered as JSON, which no Tessera value has). */
size_t tsr_pb_value_size(const tsr_value_t *v);
uint8_t *tsr_pb_value_write(const tsr_value_t *v, uint8_t *p);
/* Wire helpers for direct encoders: varint length and writing, a length-delimited field. */
static inline size_t tsr_pb_varint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 128) {
        v >>= 7;
        n++;
    }
    return n;
}
static inline uint8_t *tsr_pb_varint_write(uint64_t v, uint8_t *p) {
    while (v >= 128) {
        *p++ = (uint8_t)(v | 128);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}
/* Bytes of a length-delimited field (one-byte tag) whose body has n bytes. */
static inline size_t tsr_pb_ld_size(size_t n) { return 1 + tsr_pb_varint_size(n) + n; }

#endif
