/* The constraint providers through the C ABI: fill an attribute list from a device, as
 * NvMediaImageFillNvSciBufAttrs does on Tegra. With a device argument it fills one list and
 * prints it as JSON (ub_attr_list_dump), which the hw-tests compare with what the Rust provider
 * gives for the same device; without arguments it checks the error contract on any machine.
 *
 * Usage: providers                                   the error contract (no device needed)
 *        providers v4l2 NODE FOURCC WIDTH HEIGHT     e.g. v4l2 /dev/video0 XR24 640 480
 *        providers drm CARD PLANE FOURCC WIDTH HEIGHT e.g. drm /dev/dri/card1 0 XR24 1920 1080
 *        providers vfio BDF DMA_BITS PERM            a raw 4096-byte list; PERM ro or rw
 *        providers gpu UUID ALIGN PITCH_ALIGN        an NV12 1920x1080 image list
 * FOURCC is four characters (XR24) or a number. */
#include "check.h"
#include "unibuf.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAIL(...)                                                                           \
    do {                                                                                    \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                     \
        fprintf(stderr, __VA_ARGS__);                                                       \
        fputc('\n', stderr);                                                                \
        exit(1);                                                                            \
    } while (0)

/* A refusal: the status, and the last-error message naming `needle` (a path or an address)
 * and, when `err` is not 0, the errno the kernel answered. */
static void expect_refused(const char *what, ub_status got, ub_status want, const char *needle,
                           int err) {
    const char *msg = ub_last_error_message();
    if (got != want)
        FAIL("%s: got %s, want %s (%s)", what, ub_status_name(got), ub_status_name(want), msg);
    if (ub_last_error_status() != want)
        FAIL("%s: ub_last_error_status() is %s, want %s", what,
             ub_status_name(ub_last_error_status()), ub_status_name(want));
    if (needle && !strstr(msg, needle))
        FAIL("%s: the message does not name %s: %s", what, needle, msg);
    if (err && ub_last_error_errno() != err)
        FAIL("%s: errno %d, want %d (%s)", what, ub_last_error_errno(), err, msg);
    printf("  refused as expected: %s: %s: %s (errno %d)\n", what, ub_status_name(got), msg,
           ub_last_error_errno());
}

static uint32_t fourcc(const char *s) {
    if (strlen(s) == 4 && (s[0] < '0' || s[0] > '9'))
        return (uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 |
               (uint32_t)s[3] << 24;
    return (uint32_t)strtoul(s, NULL, 0);
}

static uint32_t num(const char *s) { return (uint32_t)strtoul(s, NULL, 0); }

static void set(ub_attr_list *l, uint32_t key, const void *v, size_t len) {
    ub_attr_kv kv = {key, v, len};
    CHECK(ub_attr_list_set_attrs(l, &kv, 1));
}

/* A list with the buffer type that the VFIO and GPU fillers need stated first. */
static ub_attr_list *raw_list(ub_module *m, uint64_t size) {
    ub_attr_list *l = NULL;
    CHECK(ub_attr_list_create(m, &l));
    uint8_t types = UB_TYPE_RAW;
    set(l, UB_KEY_TYPES, &types, sizeof types);
    set(l, UB_KEY_RAW_SIZE, &size, sizeof size);
    return l;
}

static ub_attr_list *nv12_list(ub_module *m) {
    ub_attr_list *l = NULL;
    CHECK(ub_attr_list_create(m, &l));
    uint8_t types = UB_TYPE_IMAGE;
    uint32_t fmt = 0, w = 1920, h = 1080;
    CHECK(ub_format_from_name("NV12", &fmt));
    set(l, UB_KEY_TYPES, &types, sizeof types);
    set(l, UB_KEY_IMAGE_FORMAT, &fmt, sizeof fmt);
    set(l, UB_KEY_IMAGE_WIDTH, &w, sizeof w);
    set(l, UB_KEY_IMAGE_HEIGHT, &h, sizeof h);
    return l;
}

static void print_json(ub_attr_list *l) {
    char *s = NULL;
    CHECK(ub_attr_list_dump(l, UB_DUMP_JSON, &s));
    puts(s);
    ub_string_free(s);
}

/* The number of keys a list has set (its text dump has one line per key). */
static int key_count(ub_attr_list *l) {
    char *s = NULL;
    int n = 0;
    CHECK(ub_attr_list_dump(l, UB_DUMP_TEXT, &s));
    for (const char *p = s; *p; p++)
        n += *p == '\n';
    ub_string_free(s);
    return n;
}

static const char GPU[] = "GPU-6f3a5d1c-0b7e-4c2a-9d41-8e2f7a6b5c4d";

static int errors(ub_module *m) {
    ub_attr_list *l = NULL;
    CHECK(ub_attr_list_create(m, &l));
    const char *nodev = "/dev/unibuf-no-such-node";

    /* NULL where a string or a handle belongs. */
    expect_refused("v4l2, NULL node", ub_v4l2_fill_attr_list(NULL, 0, 640, 480, l),
                   UB_ERR_BAD_PARAMETER, "node", 0);
    expect_refused("v4l2, NULL list", ub_v4l2_fill_attr_list(nodev, 0, 640, 480, NULL),
                   UB_ERR_BAD_PARAMETER, "ub_attr_list", 0);
    expect_refused("drm, NULL card", ub_drm_plane_fill_attr_list(NULL, 0, 0, 64, 64, l),
                   UB_ERR_BAD_PARAMETER, "card", 0);
    expect_refused("drm, NULL list", ub_drm_plane_fill_attr_list(nodev, 0, 0, 64, 64, NULL),
                   UB_ERR_BAD_PARAMETER, "ub_attr_list", 0);
    expect_refused("vfio, NULL bdf", ub_vfio_fill_attr_list(NULL, 28, UB_PERM_READ_WRITE, l),
                   UB_ERR_BAD_PARAMETER, "bdf", 0);
    expect_refused("vfio, NULL list",
                   ub_vfio_fill_attr_list("0000:00:03.0", 28, UB_PERM_READ_WRITE, NULL),
                   UB_ERR_BAD_PARAMETER, "ub_attr_list", 0);
    expect_refused("gpu, NULL uuid", ub_gpu_fill_attr_list(NULL, 4096, 256, l),
                   UB_ERR_BAD_PARAMETER, "gpu_uuid", 0);
    expect_refused("gpu, NULL list", ub_gpu_fill_attr_list(GPU, 4096, 256, NULL),
                   UB_ERR_BAD_PARAMETER, "ub_attr_list", 0);

    /* A path with no device: the open's errno and the path in the message. */
    expect_refused("v4l2, no such node", ub_v4l2_fill_attr_list(nodev, 0, 640, 480, l),
                   UB_ERR_NOT_SUPPORTED, nodev, ENOENT);
    expect_refused("drm, no such card", ub_drm_plane_fill_attr_list(nodev, 0, 0, 64, 64, l),
                   UB_ERR_NOT_SUPPORTED, nodev, ENOENT);
    /* A node that is no such device: the ioctl's ENOTTY. */
    expect_refused("v4l2, /dev/null", ub_v4l2_fill_attr_list("/dev/null", 0, 640, 480, l),
                   UB_ERR_NOT_SUPPORTED, "/dev/null", ENOTTY);
    expect_refused("drm, /dev/null", ub_drm_plane_fill_attr_list("/dev/null", 0, 0, 64, 64, l),
                   UB_ERR_NOT_SUPPORTED, "/dev/null", ENOTTY);
    /* VFIO asks sysfs (no syscall fails: errno 0); a malformed address is a bad parameter. */
    expect_refused("vfio, no such device",
                   ub_vfio_fill_attr_list("0000:fe:1f.7", 28, UB_PERM_READ_WRITE, l),
                   UB_ERR_NOT_SUPPORTED, "0000:fe:1f.7", 0);
    expect_refused("vfio, malformed address",
                   ub_vfio_fill_attr_list("00:03.0", 28, UB_PERM_READ_WRITE, l),
                   UB_ERR_BAD_PARAMETER, "00:03.0", 0);
    expect_refused("vfio, bad permission", ub_vfio_fill_attr_list("0000:00:03.0", 28, 99, l),
                   UB_ERR_BAD_PARAMETER, "permission", 0);
    expect_refused("gpu, not a UUID", ub_gpu_fill_attr_list("GPU-nonsense", 4096, 256, l),
                   UB_ERR_BAD_PARAMETER, "GPU-nonsense", 0);
    expect_refused("gpu, alignment 3", ub_gpu_fill_attr_list(GPU, 3, 256, l),
                   UB_ERR_BAD_PARAMETER, "powers of two", 0);
    if (key_count(l) != 0)
        FAIL("refused fills changed the list (%d keys)", key_count(l));

    /* All or none: a fill that meets a key the caller set to another value sets nothing. */
    ub_attr_list *raw = raw_list(m, 4096);
    uint32_t cpu = UB_ACCESSOR_CPU;
    set(raw, UB_KEY_ACCESSOR_KIND, &cpu, sizeof cpu);
    int before = key_count(raw);
    expect_refused("gpu, accessor kind already CPU", ub_gpu_fill_attr_list(GPU, 4096, 256, raw),
                   UB_ERR_BAD_PARAMETER, "accessor", 0);
    if (key_count(raw) != before)
        FAIL("a refused fill changed the list: %d keys, %d before", key_count(raw), before);

    /* A GPU fill needs no device: check what it sets. */
    ub_attr_list *img = nv12_list(m);
    CHECK(ub_gpu_fill_attr_list(GPU, 4096, 256, img));
    uint32_t kind = 0;
    uint64_t pitch = 0, base = 0;
    ub_attr_kv kv[] = {{UB_KEY_ACCESSOR_KIND, NULL, 0},
                       {UB_KEY_IMAGE_PITCH_ALIGN, NULL, 0},
                       {UB_KEY_IMAGE_BASE_ALIGN, NULL, 0},
                       {UB_KEY_GPU_IDS, NULL, 0}};
    CHECK(ub_attr_list_get_attrs(img, kv, 4));
    if (kv[0].len != 4 || kv[1].len != 8 || kv[2].len != 8 || kv[3].len != 16)
        FAIL("gpu fill: lengths %zu %zu %zu %zu", kv[0].len, kv[1].len, kv[2].len, kv[3].len);
    memcpy(&kind, kv[0].value, 4);
    memcpy(&pitch, kv[1].value, 8);
    memcpy(&base, kv[2].value, 8);
    if (kind != UB_ACCESSOR_GPU || pitch != 256 || base != 4096 ||
        memcmp(kv[3].value, "\x6f\x3a\x5d\x1c", 4) != 0)
        FAIL("gpu fill: kind %u pitch %llu base %llu", kind, (unsigned long long)pitch,
             (unsigned long long)base);
    printf("gpu fill: kind GPU, pitch_align 256, base_align 4096, gpu id %s\n", GPU);

    /* A reconciled list cannot be filled. */
    const ub_attr_list *in[] = {raw};
    ub_attr_list *rec = NULL;
    CHECK(ub_attr_list_reconcile(in, 1, &rec, NULL));
    expect_refused("gpu, reconciled list", ub_gpu_fill_attr_list(GPU, 4096, 256, rec),
                   UB_ERR_BAD_PARAMETER, "unreconciled", 0);

    CHECK(ub_attr_list_free(rec));
    CHECK(ub_attr_list_free(img));
    CHECK(ub_attr_list_free(raw));
    CHECK(ub_attr_list_free(l));
    return 0;
}

int main(int argc, char **argv) {
    ub_module *m = NULL;
    ub_attr_list *l = NULL;
    int dumped = 0;
    CHECK(ub_module_open(&m));
    const char *what = argc > 1 ? argv[1] : "errors";
    if (strcmp(what, "errors") == 0) {
        errors(m);
    } else if (strcmp(what, "v4l2") == 0 && argc == 6) {
        CHECK(ub_attr_list_create(m, &l));
        CHECK(ub_v4l2_fill_attr_list(argv[2], fourcc(argv[3]), num(argv[4]), num(argv[5]), l));
    } else if (strcmp(what, "drm") == 0 && argc == 7) {
        CHECK(ub_attr_list_create(m, &l));
        CHECK(ub_drm_plane_fill_attr_list(argv[2], num(argv[3]), fourcc(argv[4]), num(argv[5]),
                                          num(argv[6]), l));
    } else if (strcmp(what, "vfio") == 0 && argc == 5) {
        l = raw_list(m, 4096);
        uint32_t perm = strcmp(argv[4], "ro") == 0 ? UB_PERM_READ_ONLY : UB_PERM_READ_WRITE;
        CHECK(ub_vfio_fill_attr_list(argv[2], num(argv[3]), perm, l));
    } else if (strcmp(what, "gpu") == 0 && argc == 5) {
        l = nv12_list(m);
        CHECK(ub_gpu_fill_attr_list(argv[2], strtoull(argv[3], NULL, 0), num(argv[4]), l));
    } else {
        FAIL("usage: providers [v4l2 NODE FOURCC W H | drm CARD PLANE FOURCC W H | "
             "vfio BDF BITS ro|rw | gpu UUID ALIGN PITCH]");
    }
    if (l) {
        print_json(l);
        CHECK(ub_attr_list_free(l));
        dumped = 1;
    }
    CHECK(ub_module_close(m));
    if (ub_live_handle_count() != 0)
        FAIL("%zu handles leaked", ub_live_handle_count());
    fprintf(dumped ? stderr : stdout, "providers: OK\n");
    return 0;
}
