/* What an S3 answer means: HTTP status and S3 error Code mapped to one
 * CAIRN_E_* code and a sentence that says what went wrong (s3.h lists the
 * codes). The one place S3's errors are translated. Pure, thread-safe. */
#ifndef CAIRN_SERVER_S3_ANSWER_H
#define CAIRN_SERVER_S3_ANSWER_H

#include "common/error.h"

#include <stddef.h>

/* For a failed answer (status >= 300) with its body (may be empty, as for
 * HEAD): sets err to "<what>: HTTP <status> <Code>: <explanation>" and
 * returns the code. what names the request ("PUT bucket/key"). */
int cd_s3_answer_error(long status, const char *body, size_t len,
                       const char *what, struct cairn_err *err);

/* True for answers worth another try: 500, 502, 503 (SlowDown), 504. */
int cd_s3_answer_retryable(long status);

#endif
