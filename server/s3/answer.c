/* S3 answers to CAIRN_E_* codes and sentences (answer.h). */
#include "server/s3/answer.h"

#include "server/s3/xml.h"

#include <string.h>

/* S3 error Codes a user can act on, with what to check. */
static const struct {
    const char *code;
    int rc;
    const char *why;
} known[] = {
    {"InvalidAccessKeyId", CAIRN_E_AUTH,
     "the server does not know this access key id"},
    {"SignatureDoesNotMatch", CAIRN_E_AUTH,
     "the signature does not match: wrong secret key"},
    {"RequestTimeTooSkewed", CAIRN_E_AUTH,
     "this machine's clock is too far from the server's"},
    {"AccessDenied", CAIRN_E_AUTH,
     "the credentials may not do this on this bucket"},
    {"ExpiredToken", CAIRN_E_AUTH, "the session token has expired"},
    {"InvalidToken", CAIRN_E_AUTH, "the session token is not valid"},
    {"NoSuchBucket", CAIRN_E_NOTFOUND, "the bucket does not exist"},
    {"NoSuchKey", CAIRN_E_NOTFOUND, "no such object"},
    {"NoSuchUpload", CAIRN_E_NOTFOUND,
     "the multipart upload is gone (aborted or completed)"},
    {"BadDigest", CAIRN_E_DIGEST,
     "the server's sha256 of the payload differs from the one sent"},
    {"XAmzContentSHA256Mismatch", CAIRN_E_DIGEST,
     "the server's sha256 of the payload differs from the one sent"},
    {"InvalidRange", CAIRN_E_CORRUPT,
     "the object is shorter than the range asked for"},
    {"SlowDown", CAIRN_E_RPC, "the server asks to slow down"},
};

/* Without a body (HEAD) or a known Code, the status alone. */
static int by_status(long status, const char **why)
{
    switch (status) {
    case 401:
    case 403:
        *why = "refused: bad access key id, bad signature, clock skew or "
               "access denied";
        return CAIRN_E_AUTH;
    case 404:
        *why = "not found";
        return CAIRN_E_NOTFOUND;
    case 416:
        *why = "the object is shorter than the range asked for";
        return CAIRN_E_CORRUPT;
    default:
        break;
    }
    if (status >= 500) {
        *why = "the server failed";
        return CAIRN_E_RPC;
    }
    *why = "the server refused the request";
    return CAIRN_E_INVAL;
}

/* Text from outside goes into messages as printable ASCII only. */
static void printable(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            *s = '?';
}

int cd_s3_answer_error(long status, const char *body, size_t len,
                       const char *what, struct cairn_err *err)
{
    char code[64] = "", msg[200] = "";
    const char *why = NULL;
    int rc = by_status(status, &why);
    if (len > 0 && cd_s3_xml_text(body, len, "Code", code, sizeof code) == 0) {
        printable(code);
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
            if (strcmp(code, known[i].code) == 0) {
                rc = known[i].rc;
                why = known[i].why;
                break;
            }
        }
        if (cd_s3_xml_text(body, len, "Message", msg, sizeof msg) == 0)
            printable(msg);
    }
    return cairn_err_set(err, rc, "S3 %s: HTTP %ld%s%s: %s%s%s%s", what,
                         status, code[0] ? " " : "", code, why,
                         msg[0] ? " (server: " : "", msg, msg[0] ? ")" : "");
}

int cd_s3_answer_retryable(long status)
{
    return status == 500 || status == 502 || status == 503 || status == 504;
}
