/* The little XML S3 answers with (errors, InitiateMultipartUploadResult,
 * CompleteMultipartUploadResult): text of one element, found by name.
 * Not a general parser: answers are capped by the caller and only leaf
 * elements with plain text are read. Pure, thread-safe. */
#ifndef CAIRN_SERVER_S3_XML_H
#define CAIRN_SERVER_S3_XML_H

#include <stddef.h>

/* Copies the text of the first <tag>...</tag> in body[0..len) into out
 * (NUL-terminated), the five predefined entities decoded. Returns 0,
 * CAIRN_E_NOTFOUND when absent or unterminated, CAIRN_E_TOOBIG when the text
 * needs more than out_size bytes. out written only on success. */
int cd_s3_xml_text(const char *body, size_t len, const char *tag, char *out,
                   size_t out_size);

#endif
