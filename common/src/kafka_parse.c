/*
 * kafka_parse.c — a Kafka JSON message → one row of tsr_value_t typed by a schema.
 *
 * The conversions are the warehouse JSON Lines reader's (tsr__json_to_value in table.c), so
 * an event streamed through Kafka and the same event read from the warehouse become the same
 * values — the offline/online equality of SPEC §6 starts here. Differences from the
 * warehouse reader: a field may be declared required (missing or null → error), and errors
 * are per message (the caller counts and skips the message; nothing here aborts).
 *
 * Input is untrusted bytes: jansson validates UTF-8, bounds nesting depth and never reads
 * past n. Allocation: jansson's tree per message (freed here), values in the caller's arena.
 */
#include "table_int.h"
#include "tsr/kafka.h"

#include <string.h>

int tsr_kafka_json_to_row(const char *s, size_t n, const tsr_kafka_field_t *fields,
                          size_t nfields, tsr_arena_t *arena, tsr_value_t *row, tsr_error_t *err) {
    for (size_t i = 0; i < nfields; i++) row[i] = tsr_value_null();
    if (!s) return tsr_error_set(err, TSR_EPARSE, "empty message (no value)");
    json_error_t je;
    json_t *j = json_loadb(s, n, 0, &je);
    if (!j)
        return tsr_error_set(err, TSR_EPARSE, "invalid JSON at column %d: %s", je.column,
                             je.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return tsr_error_set(err, TSR_EPARSE, "not a JSON object");
    }
    int rc = 0;
    for (size_t i = 0; i < nfields; i++) {
        json_t *v = json_object_get(j, fields[i].name);
        if (!v || json_is_null(v)) {
            if (fields[i].required) {
                rc = tsr_error_set(err, TSR_EPARSE, "field '%s': %s (required)", fields[i].name,
                                   v ? "null" : "missing");
                break;
            }
            continue;
        }
        const char *why = NULL;
        if (tsr__json_to_value(v, fields[i].type, arena, &row[i], &why)) {
            char tn[TSR_TYPE_NAME_MAX];
            rc = tsr_error_set(err, TSR_EPARSE, "field '%s': value %s (declared %s)",
                               fields[i].name, why ? why : "is invalid",
                               tsr_type_name(fields[i].type, tn, sizeof tn));
            break;
        }
    }
    json_decref(j);
    if (rc)
        for (size_t i = 0; i < nfields; i++) row[i] = tsr_value_null();
    return rc;
}

int tsr_kafka_msg_to_row(const tsr_kafka_msg_t *m, const tsr_kafka_field_t *fields,
                         size_t nfields, tsr_arena_t *arena, tsr_value_t *row, tsr_error_t *err) {
    int rc = tsr_kafka_json_to_row(m->value, m->value_len, fields, nfields, arena, row, err);
    if (rc) tsr_error_prefix(err, "partition %d offset %lld", (int)m->partition,
                             (long long)m->offset);
    return rc;
}
