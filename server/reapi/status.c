#include "server/reapi/status.h"

#include "common/error.h"

#include <errno.h>
#include <stddef.h>

static const struct {
    int err;
    grpc_status_code code;
} err_table[] = {
    {0, GRPC_STATUS_OK},
    {CAIRN_E_INVAL, GRPC_STATUS_INVALID_ARGUMENT},
    {CAIRN_E_PARSE, GRPC_STATUS_INVALID_ARGUMENT},
    {CAIRN_E_DIGEST, GRPC_STATUS_INVALID_ARGUMENT},
    /* REAPI: a batch larger than the advertised limit is INVALID_ARGUMENT;
     * messages over the gRPC limit are refused by gRPC itself with
     * RESOURCE_EXHAUSTED before a handler runs. */
    {CAIRN_E_TOOBIG, GRPC_STATUS_INVALID_ARGUMENT},
    {CAIRN_E_NOTFOUND, GRPC_STATUS_NOT_FOUND},
    {CAIRN_E_EXISTS, GRPC_STATUS_ALREADY_EXISTS},
    {CAIRN_E_FULL, GRPC_STATUS_RESOURCE_EXHAUSTED},
    {CAIRN_E_NOMEM, GRPC_STATUS_RESOURCE_EXHAUSTED},
    {CAIRN_E_AUTH, GRPC_STATUS_UNAUTHENTICATED},
    {CAIRN_E_UNSUPPORTED, GRPC_STATUS_UNIMPLEMENTED},
    {CAIRN_E_TIMEOUT, GRPC_STATUS_DEADLINE_EXCEEDED},
    {CAIRN_E_CORRUPT, GRPC_STATUS_DATA_LOSS},
    {-ERANGE, GRPC_STATUS_OUT_OF_RANGE},
    {-EACCES, GRPC_STATUS_PERMISSION_DENIED},
    {-EBUSY, GRPC_STATUS_ABORTED},
    {-ESHUTDOWN, GRPC_STATUS_UNAVAILABLE},
    /* The store's bucket out of reach (server/store/store_tier.c): the
     * call may succeed later; nothing was acknowledged. */
    {CAIRN_E_RPC, GRPC_STATUS_UNAVAILABLE},
    {-ECANCELED, GRPC_STATUS_CANCELLED},
};

grpc_status_code cd_status_from_err(int err)
{
    for (size_t i = 0; i < sizeof err_table / sizeof err_table[0]; i++) {
        if (err_table[i].err == err)
            return err_table[i].code;
    }
    /* Everything else (CAIRN_E_DB, CAIRN_E_IO, unexpected errno) is the
     * server's fault, not the client's. */
    return GRPC_STATUS_INTERNAL;
}

static const char *const status_names[] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
    "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
};

const char *cd_status_name(grpc_status_code code)
{
    if ((unsigned)code < sizeof status_names / sizeof status_names[0])
        return status_names[code];
    return "UNKNOWN";
}
