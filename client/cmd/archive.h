/* What cairn save, import and load share (client/cmd/cmd_save.c,
 * cmd_import.c, cmd_load.c): the caps on an archive, the annotation names
 * of image references, and the helpers more than one of them uses. */
#ifndef CAIRN_CLIENT_CMD_ARCHIVE_H
#define CAIRN_CLIENT_CMD_ARCHIVE_H

#include "client/store/image.h"
#include "client/store/layer.h"
#include "client/store/store.h"
#include "common/error.h"

#include <stddef.h>
#include <stdint.h>

/* Caps on what an archive may hold (STYLE.md 7): entry count and path
 * length; file contents are bounded by the disk, JSON by
 * CAIRN_IMAGE_MAX_JSON. */
#define ARCHIVE_MAX_ENTRIES 100000
#define ARCHIVE_MAX_PATH 4096
#define ARCHIVE_MAX_LINKS 16
#define COPY_CHUNK (1 << 16)

#define ANNOT_REF_NAME "org.opencontainers.image.ref.name"
#define ANNOT_CONTAINERD_NAME "io.containerd.image.name"

/* The OCI platform names of this machine (Go's GOARCH values). A machine
 * missing from the table keeps uname's name, in static storage: the
 * strings stay valid for the life of the process. */
void cairn_archive_host_platform(const char **arch, const char **variant);

/* Media type of a layer file from its first bytes. */
const char *cairn_archive_media_sniff(const char *path);

/* A new empty file in dir; *path malloc'd. */
int cairn_archive_tmp_create(const char *dir, const char *prefix, char **path,
                             int *fd, struct cairn_err *err);

/* Stores an image whose blobs are all in the store: manifest and config
 * as bytes, then the record and its tags. */
int cairn_archive_image_commit(struct cairn_store *st,
                               const char *manifest_json, size_t manifest_len,
                               const struct cairn_manifest *m, int64_t created,
                               char *const *tags, size_t ntags,
                               char manifest_digest[CAIRN_DIGEST_STR_LEN],
                               struct cairn_err *err);

#endif
