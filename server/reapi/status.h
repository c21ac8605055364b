/* The one place where cairn error codes become gRPC status codes.
 *
 * Handlers fail with a cairn code and a sentence; the RPC layer sends
 * cd_status_from_err(code) and the sentence. Codes with no cairn name use
 * errno values: -ERANGE is OUT_OF_RANGE (bad read/write offset), -EACCES
 * is PERMISSION_DENIED, -EBUSY is ABORTED (resource in use), -ESHUTDOWN is
 * UNAVAILABLE (server draining). Thread-safe (pure functions). */
#ifndef CAIRN_SERVER_STATUS_H
#define CAIRN_SERVER_STATUS_H

#include <grpc/status.h>

grpc_status_code cd_status_from_err(int err);
/* Static upper-case name of a status ("NOT_FOUND"); "UNKNOWN" if out of
 * range. */
const char *cd_status_name(grpc_status_code code);

#endif
