/*
 * rpc_status.c — gRPC status ↔ Tessera error mapping, the small byte-buffer and metadata
 * helpers the server and client share, and the process's gRPC polling engine.
 *
 * There is one table: error.h's TSR_ERRNO_MAP gives each TSR code its gRPC status. The reverse
 * direction walks the same table and takes the first row with the status (so INVALID_ARGUMENT
 * → TSR_EINVAL, INTERNAL → TSR_EIO); statuses no row names map to TSR_EINTERNAL, except
 * CANCELLED, which a client sees when the call was abandoned → TSR_EUNAVAIL.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "rpc_int.h"

/* gRPC's mutexes are abseil's. Debian's abseil is built without NDEBUG, so every
 * absl::Mutex::Lock also runs abseil's debug deadlock detector: a global lock and a lock-graph
 * lookup per acquisition (GraphCycles::GetId was 3 % of a fetcher's CPU, docs/rpc.md). The
 * switch is C++ only — absl::SetMutexDeadlockDetectionMode(OnDeadlockCycle::kIgnore = 0) —
 * so it is looked up by its mangled names (Debian's inline namespace, then upstream's) in the
 * symbols the process has loaded; when neither is there, nothing changes. */
static int absl_tuned;

static void absl_tune(void) {
    static const char *const names[] = {
        "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
        "_ZN4absl29SetMutexDeadlockDetectionModeENS_15OnDeadlockCycleE",
    };
    void *self = dlopen(NULL, RTLD_NOW);
    if (!self) return;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *sym = dlsym(self, names[i]);
        if (!sym) continue;
        void (*set_mode)(int);
        memcpy(&set_mode, &sym, sizeof set_mode); /* object → function pointer (POSIX) */
        set_mode(0);
        absl_tuned = 1;
        break;
    }
    dlclose(self);
}

void tsr__rpc_init(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, absl_tune);
    grpc_init();
}

int tsr__rpc_absl_tuned(void) { return absl_tuned; }

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
