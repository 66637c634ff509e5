/*
 * rpc_status.c — gRPC status ↔ Tessera error mapping, the small byte-buffer and metadata
 * helpers the server and client share, and the process's gRPC polling engine.
 *
 * There is one table: error.h's TSR_ERRNO_MAP gives each TSR code its gRPC status. The reverse
 * direction walks the same table and takes the first row with the status (so INVALID_ARGUMENT
 * → TSR_EINVAL, INTERNAL → TSR_EIO); statuses no row names map to TSR_EINTERNAL, except
 * CANCELLED, which a client sees when the call was abandoned → TSR_EUNAVAIL.
 */
#include <stdlib.h>
#include <string.h>

#include "rpc_int.h"

int tsr_rpc_set_poll_engine(const char *engine, tsr_error_t *err) {
    if (!engine || !*engine) return tsr_error_set(err, TSR_EINVAL, "empty gRPC polling engine name");
    if (grpc_is_initialized())
        return tsr_error_set(err, TSR_EINVAL,
                             "gRPC polling engine '%s': gRPC has already started in this process", engine);
    /* 0: an operator's choice stays. setenv is not thread-safe: called from main, first */
    if (setenv("GRPC_POLL_STRATEGY", engine, 0) != 0)
        return tsr_error_set(err, TSR_EINTERNAL, "setenv GRPC_POLL_STRATEGY: out of memory");
    return TSR_OK;
}

/* Codes of error.h's table, in table order (the table is contiguous from 0 down). */
int tsr_rpc_status_to_error(int grpc_status) {
    if (grpc_status == TSR_GRPC_OK) return TSR_OK;
    if (grpc_status == TSR_GRPC_CANCELLED) return TSR_EUNAVAIL;
    for (int code = -1; code >= -64; code--) {
        if (strcmp(tsr_error_name(code), "EUNKNOWN") == 0) break;
        if (tsr_error_grpc_status(code) == grpc_status) return code;
    }
    return TSR_EINTERNAL;
}

const char *tsr_rpc_status_name(int s) {
    static const char *const names[] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
        "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    if (s < 0 || s >= (int)(sizeof(names) / sizeof(names[0]))) return "UNKNOWN_STATUS";
    return names[s];
}

void tsr__rpc_bb_read(grpc_byte_buffer *bb, tsr_buf_t *out) {
    tsr_buf_clear(out);
    if (!bb) return;
    grpc_byte_buffer_reader rd;
    if (grpc_byte_buffer_reader_init(&rd, bb)) {
        tsr_buf_reserve(out, grpc_byte_buffer_length(bb));
        grpc_slice sl;
        while (grpc_byte_buffer_reader_next(&rd, &sl)) {
            tsr_buf_append(out, GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl));
            grpc_slice_unref(sl);
        }
        grpc_byte_buffer_reader_destroy(&rd);
    }
    grpc_byte_buffer_destroy(bb);
}

int tsr__rpc_md_key_ok(const char *key) {
    if (!key || !*key || strncmp(key, "grpc-", 5) == 0) return 0;
    for (const char *p = key; *p; p++) {
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' ||
              ch == '.'))
            return 0;
    }
    return 1;
}
