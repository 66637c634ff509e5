/*
 * http_int.h — what the http_*.c files share and no other module may call.
 */
#ifndef TSR_HTTP_INT_H
#define TSR_HTTP_INT_H

#include "tsr/http.h"

/* Zeroed memory owned by the server, freed by tsr_http_server_free (route contexts). */
void *tsr__http_server_alloc(tsr_http_server_t *srv, size_t n);

#endif
