/*
 * value.h — Tessera's types and the tagged value every module passes around.
 *
 * Types. A tsr_type_t packs a small type tree into 32 bits, one 4-bit kind per level, outer
 * level in the low nibble:
 *     long                       TSR_LONG
 *     list<double>               TSR_TYPE_LIST(TSR_DOUBLE)
 *     map<string,long>           TSR_TYPE_MAP(TSR_LONG)                (map keys are strings)
 *     map<string,list<double>>   TSR_TYPE_MAP(TSR_TYPE_LIST(TSR_DOUBLE))
 * so types are plain integers: compared with ==, copied freely, never allocated. Map keys are
 * always strings (bucket values and histogram keys are rendered as strings, as in Chronon).
 * TSR_ANY is "not known until run time" (a raw column whose table has no schema yet).
 * TSR_NULL as a type is the type of the literal NULL.
 *
 * Values. A tsr_value_t is 16 bytes: a kind tag, a length and a payload. Strings, lists and
 * maps point at memory they do not own: a value is *borrowed* from whoever produced it (a
 * row buffer, an arena, a VM's scratch) and valid until that owner says otherwise. A map's
 * items are 2*len values: key0, value0, key1, value1, ... with string keys.
 */
#ifndef TSR_VALUE_H
#define TSR_VALUE_H

#include <stddef.h>
#include <stdint.h>

#include "tsr/mem.h"

typedef enum tsr_kind {
    TSR_NULL = 0,
    TSR_BOOL = 1,
    TSR_LONG = 2,
    TSR_DOUBLE = 3,
    TSR_STRING = 4,
    TSR_LIST = 5,
    TSR_MAP = 6,
    TSR_ANY = 7,
} tsr_kind_t;

typedef uint32_t tsr_type_t;

#define TSR_TYPE_LIST(elem) ((tsr_type_t)TSR_LIST | ((tsr_type_t)(elem) << 4))
#define TSR_TYPE_MAP(val) ((tsr_type_t)TSR_MAP | ((tsr_type_t)(val) << 4))
/* The outer kind of a type. */
#define tsr_type_kind(t) ((tsr_kind_t)((t) & 0xFu))
/* The element type of a list, or the value type of a map. */
#define tsr_type_elem(t) ((tsr_type_t)((t) >> 4))

static inline int tsr_type_is_numeric(tsr_type_t t) {
    return t == TSR_LONG || t == TSR_DOUBLE;
}
static inline int tsr_type_is_scalar(tsr_type_t t) {
    return t == TSR_BOOL || t == TSR_LONG || t == TSR_DOUBLE || t == TSR_STRING;
}

/* Writes the type's name ("long", "list<double>", "map<string,long>") into buf; returns buf. */
const char *tsr_type_name(tsr_type_t t, char *buf, size_t n);
#define TSR_TYPE_NAME_MAX 64
/* Parses a type name as written in _schema.json and CAST: long bigint int integer short
 * tinyint smallint -> long; double float real decimal -> double; string varchar char text ->
 * string; boolean bool -> boolean; list<T>, array<T>, map<string,T>. Case-insensitive.
 * Returns 0, or TSR_EPARSE. */
int tsr_type_parse(const char *s, tsr_type_t *out);

typedef struct tsr_value {
    uint8_t kind;       /* tsr_kind_t; never TSR_ANY at run time */
    uint32_t len;       /* string bytes, list items, map entries */
    union {
        int64_t l;
        double d;
        int b;
        const char *s;                  /* not NUL-terminated in general: use len */
        const struct tsr_value *items;  /* list: len items; map: 2*len (key, value) */
    } u;
} tsr_value_t;

static inline tsr_value_t tsr_value_null(void) {
    tsr_value_t v;
    v.kind = TSR_NULL; v.len = 0; v.u.l = 0;
    return v;
}
static inline tsr_value_t tsr_value_long(int64_t x) {
    tsr_value_t v;
    v.kind = TSR_LONG; v.len = 0; v.u.l = x;
    return v;
}
static inline tsr_value_t tsr_value_double(double x) {
    tsr_value_t v;
    v.kind = TSR_DOUBLE; v.len = 0; v.u.d = x;
    return v;
}
static inline tsr_value_t tsr_value_bool(int x) {
    tsr_value_t v;
    v.kind = TSR_BOOL; v.len = 0; v.u.b = x ? 1 : 0;
    return v;
}
/* Borrows s[0..n). */
static inline tsr_value_t tsr_value_string(const char *s, size_t n) {
    tsr_value_t v;
    v.kind = TSR_STRING; v.len = (uint32_t)n; v.u.s = s;
    return v;
}
static inline tsr_value_t tsr_value_list(const tsr_value_t *items, size_t n) {
    tsr_value_t v;
    v.kind = TSR_LIST; v.len = (uint32_t)n; v.u.items = items;
    return v;
}
/* items holds 2*n values: key0, val0, key1, val1, ... */
static inline tsr_value_t tsr_value_map(const tsr_value_t *items, size_t n) {
    tsr_value_t v;
    v.kind = TSR_MAP; v.len = (uint32_t)n; v.u.items = items;
    return v;
}
static inline int tsr_value_is_null(const tsr_value_t *v) { return v->kind == TSR_NULL; }

/* Total order used by MIN/MAX/TOP_K/sorting: numbers numerically (long vs double compared as
 * numbers), strings by bytes (memcmp, shorter prefix first), false < true. Values of
 * different non-numeric kinds order by kind. Lists/maps compare element-wise. Null sorts first. */
int tsr_value_cmp(const tsr_value_t *a, const tsr_value_t *b);

/* Exact equality (same kind, same bits for doubles — NaN equals NaN here). */
int tsr_value_equal(const tsr_value_t *a, const tsr_value_t *b);

/* SPEC §4 "exact": like equal, but doubles may differ by 1e-9 relative (1e-9 absolute when
 * both are near zero), recursively through lists and maps (maps compared as key sets). */
int tsr_value_close(const tsr_value_t *a, const tsr_value_t *b);

/* 64-bit hash of a value's canonical form; equal values hash equal (a long and the double of
 * the same integral value hash differently: they are different values). Seeded. */
uint64_t tsr_value_hash(const tsr_value_t *v, uint64_t seed);
/* 64-bit hash of bytes (wyhash-style mixing); the one hash the kernel and tiles use. */
uint64_t tsr_hash_bytes(const void *p, size_t n, uint64_t seed);
static inline uint64_t tsr_hash_u64(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* Deep copy into an arena (strings, lists and maps copied). */
tsr_value_t tsr_value_copy(const tsr_value_t *v, tsr_arena_t *a);

/* Appends the value as JSON (null, true, 12, 1.5, "s", [..], {..}). Doubles print with the
 * shortest form that round-trips (%.17g trimmed); NaN/Inf print as null. */
void tsr_value_to_json(const tsr_value_t *v, tsr_buf_t *out);
/* Appends the value as text for CSV/display: null is empty, strings raw, others as JSON. */
void tsr_value_to_text(const tsr_value_t *v, tsr_buf_t *out);

/* Canonical string form of a scalar, used as a map key for buckets and histograms:
 * strings as-is, longs in decimal, doubles as JSON prints them, booleans "true"/"false". */
void tsr_value_key_string(const tsr_value_t *v, tsr_buf_t *out);

/* Compact binary form of a value (for spill files, row stores and result buffers):
 * a kind byte, then long: zigzag varint; double: 8 bytes LE; bool: 1 byte; string: varint
 * length + bytes; list: varint count + items; map: varint count + (key, value) pairs. */
void tsr_value_encode(const tsr_value_t *v, tsr_buf_t *out);
/* Decodes one value. Strings point into the input (borrowed while it lives); list and map
 * item arrays are allocated in arena. Returns 0 or TSR_ECORRUPT (truncated, bad kind, nesting
 * deeper than 8, counts larger than the remaining bytes, a map key that is not a string);
 * never reads out of bounds. */
int tsr_value_decode(tsr_reader_t *r, tsr_arena_t *arena, tsr_value_t *out);

#endif
