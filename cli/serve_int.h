/*
 * serve_int.h — `tessera serve`, the embedded default (SPEC §7): the config registry, the
 * tile store, one Kafka ingest per streamed GroupBy source, uploads, and the fetch and admin
 * services (gRPC) plus the HTTP/JSON endpoints, /metrics and /health, in one process.
 *
 *     data dir ── configs/  registry entries (coordinator/registry.h)
 *              └─ tiles/    RocksDB tile store (worker/tile_store.h)
 *
 *   ApplyConfig ─▶ validate against the warehouse ─▶ compile (serving item + GroupBy states)
 *               ─▶ registry entry ─▶ install item, register tiles, start ingests
 *   Upload      ─▶ (own thread) batch computation over the warehouse ─▶ versioned tile upload
 *   Fetch*      ─▶ serving item ─▶ tile store reads
 *
 * GroupBy states (worker/host.h, shared with tessera-worker): every GroupBy served from tiles
 * (applied on its own or as a Join part) has one state per name — its long-lived online plan
 * (the kernels the tile store's merge operator uses), and its ingests. A name keeps one definition while the server runs: applying
 * a changed GroupBy under a served name is refused (Chronon's practice: a new version name).
 */
#ifndef TSR_SERVE_INT_H
#define TSR_SERVE_INT_H

#include <stdint.h>
#include <stdio.h>

#include "tsr/error.h"

typedef struct tsr_server tsr_server_t;

typedef struct tsr_server_opts {
    const char *data_dir;
    const char *warehouse;          /* absolute */
    const char *bind;               /* "127.0.0.1" */
    int grpc_port;                  /* 0 = a free port */
    int http_port;                  /* 0 = a free port; -1 = no HTTP */
    const char *kafka_bootstrap;    /* NULL = no streaming */
    int64_t allowed_lateness_ms;
    int rpc_threads;
    FILE *log;
} tsr_server_opts_t;

int tsr_server_start(const tsr_server_opts_t *o, tsr_server_t **out, tsr_error_t *err);
int tsr_server_grpc_port(const tsr_server_t *s);
int tsr_server_http_port(const tsr_server_t *s);
/* Drains (stops accepting, finishes requests and the ingests' batches in hand) and frees. */
void tsr_server_stop(tsr_server_t *s);

#endif
