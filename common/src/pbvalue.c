/*
 * pbvalue.c — tsr_value_t <-> tessera.v1.Value, arena-backed (pbvalue.h).
 */
#include "tsr/pbvalue.h"

#include <string.h>

#include "tsr/error.h"

static void *arena_alloc(void *ud, size_t n) { return tsr_arena_alloc(ud, n ? n : 1); }
static void arena_free(void *ud, void *p) {
    (void)ud;
    (void)p;
}

void tsr_pb_allocator(tsr_arena_t *arena, ProtobufCAllocator *out) {
    out->alloc = arena_alloc;
    out->free = arena_free;
    out->allocator_data = arena;
}

static const char *key_text(const tsr_value_t *k, tsr_arena_t *arena) {
    if (k->kind == TSR_STRING) return tsr_arena_strndup(arena, k->u.s, k->len);
    tsr_buf_t b;
    tsr_buf_init(&b);
    tsr_value_to_json(k, &b);
    char *s = tsr_arena_strndup(arena, (const char *)b.data, b.len);
    tsr_buf_free(&b);
    return s;
}

Tessera__V1__Value *tsr_pb_value_new(const tsr_value_t *v, tsr_arena_t *arena) {
    Tessera__V1__Value *pv = tsr_arena_alloc(arena, sizeof *pv);
    tessera__v1__value__init(pv);
    switch (v->kind) {
    case TSR_BOOL:
        pv->kind_case = TESSERA__V1__VALUE__KIND_BOOL_VALUE;
        pv->bool_value = v->u.b;
        break;
    case TSR_LONG:
        pv->kind_case = TESSERA__V1__VALUE__KIND_LONG_VALUE;
        pv->long_value = v->u.l;
        break;
    case TSR_DOUBLE:
        pv->kind_case = TESSERA__V1__VALUE__KIND_DOUBLE_VALUE;
        pv->double_value = v->u.d;
        break;
    case TSR_STRING:
        pv->kind_case = TESSERA__V1__VALUE__KIND_STRING_VALUE;
        pv->string_value = tsr_arena_strndup(arena, v->u.s, v->len);
        break;
    case TSR_LIST: {
        Tessera__V1__ValueList *l = tsr_arena_alloc(arena, sizeof *l);
        tessera__v1__value_list__init(l);
        l->n_items = v->len;
        l->items = tsr_arena_alloc(arena, (v->len ? v->len : 1) * sizeof *l->items);
        for (uint32_t i = 0; i < v->len; i++) l->items[i] = tsr_pb_value_new(&v->u.items[i], arena);
        pv->kind_case = TESSERA__V1__VALUE__KIND_LIST_VALUE;
        pv->list_value = l;
        break;
    }
    case TSR_MAP: {
        Tessera__V1__ValueMap *m = tsr_arena_alloc(arena, sizeof *m);
        tessera__v1__value_map__init(m);
        m->n_entries = v->len;
        m->entries = tsr_arena_alloc(arena, (v->len ? v->len : 1) * sizeof *m->entries);
        for (uint32_t i = 0; i < v->len; i++) {
            Tessera__V1__MapEntry *e = tsr_arena_alloc(arena, sizeof *e);
            tessera__v1__map_entry__init(e);
            e->key = (char *)key_text(&v->u.items[2 * i], arena);
            e->value = tsr_pb_value_new(&v->u.items[2 * i + 1], arena);
            m->entries[i] = e;
        }
        pv->kind_case = TESSERA__V1__VALUE__KIND_MAP_VALUE;
        pv->map_value = m;
        break;
    }
    default:
        pv->kind_case = TESSERA__V1__VALUE__KIND_NULL_VALUE;
        pv->null_value = TESSERA__V1__NULL_VALUE__NULL_VALUE;
        break;
    }
    return pv;
}

static int get(const Tessera__V1__Value *pv, tsr_arena_t *arena, tsr_value_t *out, int depth) {
    *out = tsr_value_null();
    if (!pv) return 0;
    if (depth > TSR_PB_MAX_DEPTH) return TSR_EINVAL;
    switch (pv->kind_case) {
    case TESSERA__V1__VALUE__KIND_BOOL_VALUE: *out = tsr_value_bool(pv->bool_value); break;
    case TESSERA__V1__VALUE__KIND_LONG_VALUE: *out = tsr_value_long(pv->long_value); break;
    case TESSERA__V1__VALUE__KIND_DOUBLE_VALUE: *out = tsr_value_double(pv->double_value); break;
    case TESSERA__V1__VALUE__KIND_STRING_VALUE: {
        const char *s = pv->string_value ? pv->string_value : "";
        size_t n = strlen(s);
        *out = tsr_value_string(tsr_arena_strndup(arena, s, n), n);
        break;
    }
    case TESSERA__V1__VALUE__KIND_LIST_VALUE: {
        size_t n = pv->list_value ? pv->list_value->n_items : 0;
        tsr_value_t *items = tsr_arena_alloc(arena, (n ? n : 1) * sizeof *items);
        for (size_t i = 0; i < n; i++) {
            int rc = get(pv->list_value->items[i], arena, &items[i], depth + 1);
            if (rc) return rc;
        }
        *out = tsr_value_list(items, n);
        break;
    }
    case TESSERA__V1__VALUE__KIND_MAP_VALUE: {
        size_t n = pv->map_value ? pv->map_value->n_entries : 0;
        tsr_value_t *items = tsr_arena_alloc(arena, (n ? 2 * n : 1) * sizeof *items);
        for (size_t i = 0; i < n; i++) {
            const Tessera__V1__MapEntry *e = pv->map_value->entries[i];
            const char *k = e && e->key ? e->key : "";
            size_t kn = strlen(k);
            items[2 * i] = tsr_value_string(tsr_arena_strndup(arena, k, kn), kn);
            int rc = get(e ? e->value : NULL, arena, &items[2 * i + 1], depth + 1);
            if (rc) return rc;
        }
        *out = tsr_value_map(items, n);
        break;
    }
    default: break;
    }
    return 0;
}

int tsr_pb_value_get(const Tessera__V1__Value *pv, tsr_arena_t *arena, tsr_value_t *out) {
    return get(pv, arena, out, 0);
}

void *tsr_pb_unpack(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n,
                    tsr_arena_t *arena, tsr_error_t *err) {
    ProtobufCAllocator al;
    tsr_pb_allocator(arena, &al);
    ProtobufCMessage *m = protobuf_c_message_unpack(d, &al, n, p);
    if (!m) tsr_error_set(err, TSR_EINVAL, "malformed %s", d->short_name);
    return m;
}

/* Reads a varint at p[*i..n); 0, or -1 when it runs past n or over 10 bytes. */
static int varint_at(const uint8_t *p, size_t n, size_t *i, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 70 && *i < n; shift += 7) {
        uint8_t b = p[(*i)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return 0;
    }
    return -1;
}

size_t tsr_pb_count_field(const uint8_t *p, size_t n, uint32_t field) {
    size_t count = 0, i = 0;
    while (i < n) {
        uint64_t tag, v;
        if (varint_at(p, n, &i, &tag) != 0) break;
        switch (tag & 7) {
        case 0: /* varint */
            if (varint_at(p, n, &i, &v) != 0) return count;
            break;
        case 1: /* fixed64 */
            if (n - i < 8) return count;
            i += 8;
            break;
        case 2: /* length-delimited */
            if (varint_at(p, n, &i, &v) != 0 || v > n - i) return count;
            i += (size_t)v;
            count += (tag >> 3) == field;
            break;
        case 5: /* fixed32 */
            if (n - i < 4) return count;
            i += 4;
            break;
        default: /* groups (deprecated) and invalid wire types */
            return count;
        }
    }
    return count;
}

void tsr_pb_pack(const ProtobufCMessage *m, tsr_buf_t *out) {
    size_t n = protobuf_c_message_get_packed_size(m);
    tsr_buf_reserve(out, n);
    protobuf_c_message_pack(m, out->data + out->len);
    out->len += n;
}

/* ---- direct encoding (tsr_pb_value_size / _write): the bytes protobuf-c packs for
 * tsr_pb_value_new(v). Value: oneof kind, always written once set — null 1 (varint 0), bool 2,
 * long 3 (int64 varint), double 4 (fixed64), string 5, list 6 (ValueList: items 1), map 7
 * (ValueMap: entries 1; MapEntry: key 1, omitted when empty as proto3 does, value 2). */

static size_t cstr_len(const char *s, size_t n) {
    const char *z = n ? memchr(s, 0, n) : NULL;
    return z ? (size_t)(z - s) : n;
}

/* A map key's text (key_text without the arena): strings borrowed, others rendered in tmp. */
static const char *key_bytes(const tsr_value_t *k, tsr_buf_t *tmp, size_t *n) {
    if (k->kind == TSR_STRING) {
        *n = cstr_len(k->u.s, k->len);
        return k->u.s;
    }
    tsr_buf_clear(tmp);
    tsr_value_to_json(k, tmp);
    *n = cstr_len((const char *)tmp->data, tmp->len);
    return (const char *)tmp->data;
}

static size_t entry_size(const tsr_value_t *k, const tsr_value_t *v) {
    size_t kn = 0;
    if (k->kind == TSR_STRING) kn = cstr_len(k->u.s, k->len);
    else {
        tsr_buf_t tmp;
        tsr_buf_init(&tmp);
        key_bytes(k, &tmp, &kn);
        tsr_buf_free(&tmp);
    }
    return (kn ? tsr_pb_ld_size(kn) : 0) + tsr_pb_ld_size(tsr_pb_value_size(v));
}

size_t tsr_pb_value_size(const tsr_value_t *v) {
    switch (v->kind) {
    case TSR_BOOL: return 2;
    case TSR_LONG: return 1 + tsr_pb_varint_size((uint64_t)v->u.l);
    case TSR_DOUBLE: return 9;
    case TSR_STRING: return tsr_pb_ld_size(cstr_len(v->u.s, v->len));
    case TSR_LIST: {
        size_t n = 0;
        for (uint32_t i = 0; i < v->len; i++) n += tsr_pb_ld_size(tsr_pb_value_size(&v->u.items[i]));
        return tsr_pb_ld_size(n);
    }
    case TSR_MAP: {
        size_t n = 0;
        for (uint32_t i = 0; i < v->len; i++)
            n += tsr_pb_ld_size(entry_size(&v->u.items[2 * i], &v->u.items[2 * i + 1]));
        return tsr_pb_ld_size(n);
    }
    default: return 2;
    }
}

static uint8_t *ld_write(uint8_t tag, const void *b, size_t n, uint8_t *p) {
    *p++ = tag;
    p = tsr_pb_varint_write(n, p);
    if (n) memcpy(p, b, n);
    return p + n;
}

uint8_t *tsr_pb_value_write(const tsr_value_t *v, uint8_t *p) {
    switch (v->kind) {
    case TSR_BOOL:
        *p++ = 0x10;
        *p++ = v->u.b ? 1 : 0;
        return p;
    case TSR_LONG:
        *p++ = 0x18;
        return tsr_pb_varint_write((uint64_t)v->u.l, p);
    case TSR_DOUBLE: {
        uint64_t u;
        memcpy(&u, &v->u.d, 8);
        *p++ = 0x21;
        for (int i = 0; i < 8; i++) *p++ = (uint8_t)(u >> (8 * i));
        return p;
    }
    case TSR_STRING: return ld_write(0x2a, v->u.s, cstr_len(v->u.s, v->len), p);
    case TSR_LIST: {
        size_t n = 0;
        for (uint32_t i = 0; i < v->len; i++) n += tsr_pb_ld_size(tsr_pb_value_size(&v->u.items[i]));
        *p++ = 0x32;
        p = tsr_pb_varint_write(n, p);
        for (uint32_t i = 0; i < v->len; i++) {
            *p++ = 0x0a;
            p = tsr_pb_varint_write(tsr_pb_value_size(&v->u.items[i]), p);
            p = tsr_pb_value_write(&v->u.items[i], p);
        }
        return p;
    }
    case TSR_MAP: {
        size_t n = 0;
        for (uint32_t i = 0; i < v->len; i++)
            n += tsr_pb_ld_size(entry_size(&v->u.items[2 * i], &v->u.items[2 * i + 1]));
        *p++ = 0x3a;
        p = tsr_pb_varint_write(n, p);
        tsr_buf_t tmp;
        tsr_buf_init(&tmp);
        for (uint32_t i = 0; i < v->len; i++) {
            const tsr_value_t *k = &v->u.items[2 * i], *x = &v->u.items[2 * i + 1];
            *p++ = 0x0a;
            p = tsr_pb_varint_write(entry_size(k, x), p);
            size_t kn;
            const char *kb = key_bytes(k, &tmp, &kn);
            if (kn) p = ld_write(0x0a, kb, kn, p);
            *p++ = 0x12;
            p = tsr_pb_varint_write(tsr_pb_value_size(x), p);
            p = tsr_pb_value_write(x, p);
        }
        tsr_buf_free(&tmp);
        return p;
    }
    default:
        *p++ = 0x08;
        *p++ = 0;
        return p;
    }
}
