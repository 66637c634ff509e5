/*
 * coord_rpc.h — the coordinator's gRPC services over coord.h: tessera.v1.CoordinatorService
 * (workers and fetchers), tessera.v1.AdminService (the CLI) and grpc.health.v1.Health.
 *
 * Design:
 *   - Unary handlers call the core and pack the response; a follower's TSR_EUNAVAIL
 *     "not the leader; leader is HOST:PORT" goes out as UNAVAILABLE with response metadata
 *     `tessera-leader: HOST:PORT` (when the leader is known).
 *   - WatchAssignments / WatchRouting: a full snapshot at the start and after every change of
 *     the core's revision; between changes the handler waits on the core's condition variable
 *     for at most 1 s and re-checks whether the call was cancelled or the server stops. A
 *     replica that stops leading ends the stream with UNAVAILABLE (clients reconnect).
 *   - Upload and Backfill are deferred (TSR_RPC_DEFER): the core's callback finishes the call.
 *     Its deadline is the call's (at most one hour / a day when the client sets none). A call
 *     that names its job (job_id) can be followed with GetJob when it breaks (failover).
 */
#ifndef TSR_COORD_RPC_H
#define TSR_COORD_RPC_H

#include "tsr/coord.h"
#include "tsr/rpc.h"

typedef struct tsr_coord_rpc tsr_coord_rpc_t;

/* c and version are borrowed for the life of the object. */
tsr_coord_rpc_t *tsr_coord_rpc_new(tsr_coord_t *c, const char *version);
/* Registers every method (and Health) on s, before tsr_rpc_server_start. */
int tsr_coord_rpc_register(tsr_coord_rpc_t *r, tsr_rpc_server_t *s, tsr_error_t *err);
/* Makes streaming handlers return (call before tsr_rpc_server_free for a prompt stop). */
void tsr_coord_rpc_stop(tsr_coord_rpc_t *r);
/* After tsr_rpc_server_free. NULL is a no-op. */
void tsr_coord_rpc_free(tsr_coord_rpc_t *r);

#endif
