/* What cairn save, import and load share (see archive.h). */
#include "client/cmd/archive.h"

#include "cachekey/digest.h"
#include "common/fdio.h"
#include "client/store/image.h"
#include "client/store/layer.h"
#include "client/store/store.h"
#include "common/buf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

/* The OCI platform names of this machine (Go's GOARCH values). A machine
 * missing from the table keeps uname's name, in static storage: the
 * strings stay valid for the life of the process. */
void cairn_archive_host_platform(const char **arch, const char **variant)
{
    static const struct {
        const char *machine, *arch, *variant;
    } map[] = {
        {"x86_64", "amd64", NULL},    {"aarch64", "arm64", "v8"},
        {"armv7l", "arm", "v7"},      {"armv6l", "arm", "v6"},
        {"i686", "386", NULL},        {"i386", "386", NULL},
        {"ppc64le", "ppc64le", NULL}, {"s390x", "s390x", NULL},
        {"riscv64", "riscv64", NULL},
    };
    static struct utsname u; /* outlives the call: see above */
    *arch = "amd64";
    *variant = NULL;
    if (uname(&u) != 0)
        return;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (strcmp(u.machine, map[i].machine) == 0) {
            *arch = map[i].arch;
            *variant = map[i].variant;
            return;
        }
    }
    *arch = u.machine;
}

/* Media type of a layer file from its first bytes. */
const char *cairn_archive_media_sniff(const char *path)
{
    unsigned char m[4] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, m, sizeof m);
        (void)n;
        close(fd);
    }
    if (m[0] == 0x1f && m[1] == 0x8b)
        return CAIRN_MEDIA_LAYER_GZIP;
    if (m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd)
        return CAIRN_MEDIA_LAYER_ZSTD;
    return CAIRN_MEDIA_LAYER_TAR;
}

/* A new empty file in dir; *path malloc'd. */
int cairn_archive_tmp_create(const char *dir, const char *prefix, char **path,
                             int *fd, struct cairn_err *err)
{
    struct cairn_buf b;
    cairn_buf_init(&b, PATH_MAX);
    if (cairn_buf_printf(&b, "%s/%sXXXXXX", dir, prefix))
        return cairn_err_set(err, CAIRN_E_TOOBIG, "temporary path too long");
    int f = mkostemp(b.data, O_CLOEXEC);
    if (f < 0) {
        int e = errno;
        cairn_err_set(err, -e, "creating a file in %s: %s", dir, strerror(e));
        cairn_buf_free(&b);
        return -e;
    }
    *fd = f;
    *path = cairn_buf_take(&b);
    return 0;
}

/* Stores an image whose blobs are all in the store: manifest and config
 * as bytes, then the record and its tags. */
int cairn_archive_image_commit(struct cairn_store *st,
                               const char *manifest_json, size_t manifest_len,
                               const struct cairn_manifest *m, int64_t created,
                               char *const *tags, size_t ntags,
                               char manifest_digest[CAIRN_DIGEST_STR_LEN],
                               struct cairn_err *err)
{
    struct cairn_image_row row;
    memset(&row, 0, sizeof row);
    int rc = cairn_store_blob_add_data(st, manifest_json, manifest_len,
                                       row.manifest_digest, err);
    if (rc)
        return rc;
    snprintf(row.config_digest, sizeof row.config_digest, "%s",
             m->config_digest);
    row.created = created < 0 ? 0 : created;
    for (size_t i = 0; i < m->nlayers; i++)
        row.size += m->layers[i].size;
    if ((rc = cairn_store_image_add(st, &row, err)))
        return rc;
    for (size_t i = 0; i < ntags; i++)
        if ((rc = cairn_store_tag(st, tags[i], row.manifest_digest, err)))
            return rc;
    snprintf(manifest_digest, CAIRN_DIGEST_STR_LEN, "%s", row.manifest_digest);
    return 0;
}
