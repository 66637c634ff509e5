/*
 * registry.h — the config registry (SPEC §7 "config registry"): applied Chronon configs by
 * metaData.name, with a version that increases on every change. The embedded default keeps it
 * in files under the data directory; the cluster coordinator will keep the same records in
 * etcd (issue 5).
 *
 * Storage: <dir>/<escaped name>.entry per config — a first line of JSON
 * {"name","kind","team","online","version","applied_at_millis"} and then the config text
 * exactly as applied — written to a temporary file and renamed, so a crash leaves the old
 * entry or the new one. Names are escaped to [A-Za-z0-9_.-] with %XX for other bytes.
 *
 * Thread-safe (one mutex); records handed out are copies the caller frees.
 */
#ifndef TSR_REGISTRY_H
#define TSR_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "tsr/config.h"
#include "tsr/error.h"
#include "tsr/mem.h"

typedef struct tsr_registry tsr_registry_t;

typedef struct tsr_reg_entry {
    char *name;
    tsr_conf_kind_t kind;
    char *team;
    int online;
    int64_t version;
    int64_t applied_at_ms;
    char *text;                 /* the config JSON as applied */
    size_t text_len;
} tsr_reg_entry_t;

/* Opens (creating) the registry in dir and loads its entries; an unreadable entry is an error
 * naming the file. */
int tsr_registry_open(const char *dir, tsr_registry_t **out, tsr_error_t *err);
void tsr_registry_close(tsr_registry_t *r);

/* Stores text under name (kind, team, online from the loaded config). *created = 1 for a new
 * name; *unchanged = 1 when the same text was already applied (then nothing is written and
 * the version stays). The stored entry is copied to *out (may be NULL). */
int tsr_registry_put(tsr_registry_t *r, const tsr_config_t *conf, const char *text, size_t n,
                     tsr_reg_entry_t *out, int *created, int *unchanged, tsr_error_t *err);
/* Copies the entry of name into *out; TSR_ENOTFOUND when absent. */
int tsr_registry_get(tsr_registry_t *r, const char *name, tsr_reg_entry_t *out, tsr_error_t *err);
/* Removes name (its entry copied to *out when not NULL); TSR_ENOTFOUND when absent. */
int tsr_registry_delete(tsr_registry_t *r, const char *name, tsr_reg_entry_t *out, tsr_error_t *err);
/* Every entry (kind 0 = all kinds), sorted by name; caller frees with tsr_reg_entries_free. */
size_t tsr_registry_list(tsr_registry_t *r, tsr_conf_kind_t kind, tsr_reg_entry_t **out);
size_t tsr_registry_count(tsr_registry_t *r);

void tsr_reg_entry_free(tsr_reg_entry_t *e);

/* The record format, shared with the coordinator's registry in etcd (coord.h): the JSON header
 * line, '\n', then the text. encode appends to out; decode fills *e (caller frees with
 * tsr_reg_entry_free) or fails with TSR_ECORRUPT "<label>: not a registry entry ...". */
void tsr_reg_entry_encode(const tsr_reg_entry_t *e, tsr_buf_t *out);
int tsr_reg_entry_decode(const char *s, size_t n, const char *label, tsr_reg_entry_t *e,
                         tsr_error_t *err);
void tsr_reg_entries_free(tsr_reg_entry_t *v, size_t n);

#endif
