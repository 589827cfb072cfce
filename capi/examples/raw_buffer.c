/* The CUDA guide's raw buffer flow through unibuf's C API: an attribute list with the buffer
 * type, size, alignment, CPU access, permission and GPU id; reconcile; allocate; read the
 * attributes back; write through the CPU pointer. Also shows the error contract: set-once,
 * a conflict that prints, NULL and freed handles refused.
 *
 * Usage: raw_buffer [--device]   (--device: a device accessor, so the buffer is a dma-buf
 * from a heap; default: a CPU accessor, which any machine can serve with a memfd) */
#include "check.h"
#include "unibuf.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPECT(call, want)                                                                  \
    do {                                                                                    \
        ub_status st_ = (call);                                                             \
        if (st_ != (want)) {                                                                \
            fprintf(stderr, "%s:%d: %s: got %s, want %s (%s)\n", __FILE__, __LINE__, #call, \
                    ub_status_name(st_), ub_status_name(want), ub_last_error_message());    \
            exit(1);                                                                        \
        }                                                                                   \
        printf("  refused as expected: %s: %s\n", ub_status_name(st_),                      \
               ub_last_error_message());                                                    \
    } while (0)

int main(int argc, char **argv) {
    int device = argc > 1 && strcmp(argv[1], "--device") == 0;
    ub_module *module = NULL;
    ub_attr_list *list = NULL, *reconciled = NULL, *conflict = NULL, *image = NULL;
    ub_obj *obj = NULL;

    CHECK(ub_module_open(&module));
    CHECK(ub_attr_list_create(module, &list));

    /* NvSciBufGeneralAttrKey_Types, RawBufferAttrKey_Size/Align, NeedCpuAccess,
     * RequiredPerm, GpuId. */
    uint8_t types = UB_TYPE_RAW;
    uint64_t size = 1 << 20, align = 4096;
    bool cpu = true;
    uint32_t perm = UB_PERM_READ_WRITE;
    uint32_t kind = device ? UB_ACCESSOR_DEVICE : UB_ACCESSOR_CPU;
    /* NvSciRmGpuId: the GPU's 16-byte UUID (nvidia-smi -L: GPU-6f3a5d1c-0b7e-4c2a-9d41-8e2f7a6b5c4d). */
    static const uint8_t gpu[16] = {0x6f, 0x3a, 0x5d, 0x1c, 0x0b, 0x7e, 0x4c, 0x2a,
                                    0x9d, 0x41, 0x8e, 0x2f, 0x7a, 0x6b, 0x5c, 0x4d};
    static const char name[] = "cuda-raw";
    ub_attr_kv kv[] = {
        {UB_KEY_TYPES, &types, sizeof types},
        {UB_KEY_RAW_SIZE, &size, sizeof size},
        {UB_KEY_RAW_ALIGN, &align, sizeof align},
        {UB_KEY_NEED_CPU_ACCESS, &cpu, sizeof cpu},
        {UB_KEY_REQUIRED_PERMISSION, &perm, sizeof perm},
        {UB_KEY_GPU_IDS, gpu, sizeof gpu},
        {UB_KEY_ACCESSOR_NAME, name, sizeof name},
        {UB_KEY_ACCESSOR_KIND, &kind, sizeof kind},
    };
    CHECK(ub_attr_list_set_attrs(list, kv, sizeof kv / sizeof kv[0]));
    printf("set %zu attributes\n", sizeof kv / sizeof kv[0]);

    /* Set-once: setting a key again, or an output key, is refused and changes nothing. */
    EXPECT(ub_attr_list_set_attrs(list, &kv[1], 1), UB_ERR_BAD_PARAMETER);
    uint64_t out_size = 5;
    ub_attr_kv out_kv = {UB_KEY_OUT_SIZE, &out_size, sizeof out_size};
    EXPECT(ub_attr_list_set_attrs(list, &out_kv, 1), UB_ERR_BAD_PARAMETER);
    uint32_t bad_len = 7;
    ub_attr_kv short_kv = {UB_KEY_RAW_SIZE, &bad_len, sizeof bad_len};
    EXPECT(ub_attr_list_set_attrs(list, &short_kv, 1), UB_ERR_BAD_PARAMETER);

    /* Reconcile (one list here; the CUDA guide reconciles the lists of every accessor). */
    const ub_attr_list *inputs[] = {list};
    CHECK(ub_attr_list_reconcile(inputs, 1, &reconciled, &conflict));
    bool is_reconciled = false;
    CHECK(ub_attr_list_is_reconciled(reconciled, &is_reconciled));
    size_t slots = 0;
    CHECK(ub_attr_list_get_slot_count(reconciled, &slots));
    printf("reconciled: %s, %zu slot\n", is_reconciled ? "yes" : "no", slots);
    bool valid = false;
    CHECK(ub_attr_list_validate_reconciled(reconciled, inputs, 1, &valid));

    /* A conflict: a raw list and an image list cannot be one buffer. */
    CHECK(ub_attr_list_create(module, &image));
    uint8_t itypes = UB_TYPE_IMAGE;
    ub_attr_kv ikv[] = {{UB_KEY_TYPES, &itypes, 1}, {UB_KEY_ACCESSOR_NAME, "display", 8}};
    CHECK(ub_attr_list_set_attrs(image, ikv, 2));
    const ub_attr_list *clash[] = {list, image};
    ub_attr_list *r2 = NULL;
    EXPECT(ub_attr_list_reconcile(clash, 2, &r2, &conflict), UB_ERR_RECONCILIATION_FAILED);
    char *text = NULL, *json = NULL;
    CHECK(ub_attr_list_dump(conflict, UB_DUMP_TEXT, &text));
    CHECK(ub_attr_list_dump(conflict, UB_DUMP_JSON, &json));
    printf("conflict (text):\n%s\nconflict (json): %zu bytes\n", text, strlen(json));
    ub_string_free(text);
    ub_string_free(json);
    CHECK(ub_attr_list_free(conflict));

    /* Allocate, then read the attributes back from the object's list. */
    CHECK(ub_obj_alloc(reconciled, &obj));
    ub_attr_list *olist = NULL;
    CHECK(ub_obj_get_attr_list(obj, &olist));
    ub_attr_kv get[] = {{UB_KEY_OUT_SIZE, NULL, 0}, {UB_KEY_OUT_ALIGN, NULL, 0}, {UB_KEY_OUT_PERMISSION, NULL, 0},
                        {UB_KEY_OUT_CPU_ACCESS, NULL, 0}, {UB_KEY_GPU_IDS, NULL, 0}, {UB_KEY_RAW_SIZE, NULL, 0},
                        {UB_KEY_PREFERRED_BACKEND, NULL, 0}};
    CHECK(ub_attr_list_get_attrs(olist, get, sizeof get / sizeof get[0]));
    uint64_t rsize = *(const uint64_t *)get[0].value, ralign = *(const uint64_t *)get[1].value;
    uint32_t rperm = *(const uint32_t *)get[2].value;
    bool rcpu = *(const bool *)get[3].value;
    printf("out.size %" PRIu64 ", out.align %" PRIu64 ", out.permission %u, out.cpu_access %d, "
           "gpu_ids %zu bytes, preferred_backend %s\n",
           rsize, ralign, rperm, rcpu, get[4].len, get[6].value ? "set" : "unset");
    if (rsize < size || ralign != align || rperm != UB_PERM_READ_WRITE || !rcpu ||
        get[4].len != sizeof gpu || memcmp(get[4].value, gpu, sizeof gpu) != 0 ||
        get[6].value != NULL) {
        fprintf(stderr, "unexpected attributes\n");
        return 1;
    }
    char *report = NULL;
    CHECK(ub_attr_list_dump(olist, UB_DUMP_TEXT, &report));
    printf("%s", report);
    ub_string_free(report);

    uint64_t osize = 0;
    uint32_t operm = 0;
    int fd = -1;
    CHECK(ub_obj_get_size(obj, &osize));
    CHECK(ub_obj_get_permission(obj, &operm));
    CHECK(ub_obj_get_fd(obj, &fd));
    printf("object: %" PRIu64 " bytes, permission %u, fd %d\n", osize, operm, fd);
    /* Who exported it (a dma-buf's exp_name in fdinfo; a memfd has none). */
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    FILE *info = fopen(path, "r");
    while (info && fgets(line, sizeof line, info)) {
        if (strncmp(line, "exp_name:", 9) == 0) printf("fdinfo %s", line);
    }
    if (info) fclose(info);

    /* CPU access: a persistent mapping held by the handle, bracketed explicitly. */
    void *p = NULL;
    CHECK(ub_obj_get_cpu_ptr(obj, &p));
    CHECK(ub_obj_begin_cpu_access(obj, UB_CPU_WRITE));
    memset(p, 0xab, (size_t)size);
    CHECK(ub_obj_flush_cpu_cache_range(obj, 0, size));
    CHECK(ub_obj_end_cpu_access(obj, UB_CPU_WRITE));
    const void *cp = NULL;
    CHECK(ub_obj_get_const_cpu_ptr(obj, &cp));
    if (cp != p || ((const unsigned char *)cp)[size - 1] != 0xab) {
        fprintf(stderr, "const pointer differs or data lost\n");
        return 1;
    }
    EXPECT(ub_obj_flush_cpu_cache_range(obj, size, osize), UB_ERR_BAD_PARAMETER);

    /* A read-only duplicate gets no writable pointer. */
    ub_obj *ro = NULL;
    CHECK(ub_obj_dup_with_reduced_perm(obj, UB_PERM_READ_ONLY, &ro));
    void *wp = NULL;
    EXPECT(ub_obj_get_cpu_ptr(ro, &wp), UB_ERR_ACCESS_DENIED);
    EXPECT(ub_obj_begin_cpu_access(ro, UB_CPU_WRITE), UB_ERR_ACCESS_DENIED);
    ub_obj *rw = NULL;
    EXPECT(ub_obj_dup_with_reduced_perm(ro, UB_PERM_READ_WRITE, &rw), UB_ERR_ACCESS_DENIED);
    const void *rp = NULL;
    CHECK(ub_obj_get_const_cpu_ptr(ro, &rp));
    if (((const unsigned char *)rp)[0] != 0xab) {
        fprintf(stderr, "read-only view does not see the data\n");
        return 1;
    }

    /* Handles: NULL, wrong kind, freed twice: all refused, none crash. */
    EXPECT(ub_obj_free(NULL), UB_ERR_BAD_PARAMETER);
    EXPECT(ub_attr_list_free((ub_attr_list *)obj), UB_ERR_BAD_PARAMETER);
    EXPECT(ub_attr_list_get_attrs(NULL, get, 1), UB_ERR_BAD_PARAMETER);
    EXPECT(ub_attr_list_get_attrs(olist, NULL, 1), UB_ERR_BAD_PARAMETER);

    /* Freeing the list the object was allocated from is safe: the object holds its own. */
    CHECK(ub_attr_list_free(reconciled));
    CHECK(ub_obj_get_attr_list(obj, &olist));
    CHECK(ub_obj_free(ro));
    EXPECT(ub_obj_free(ro), UB_ERR_BAD_PARAMETER);
    CHECK(ub_obj_free(obj));
    CHECK(ub_attr_list_free(list));
    CHECK(ub_attr_list_free(image));
    CHECK(ub_module_close(module));
    EXPECT(ub_module_close(module), UB_ERR_BAD_PARAMETER);
    if (ub_live_handle_count() != 0) {
        fprintf(stderr, "%zu handles leaked\n", ub_live_handle_count());
        return 1;
    }
    printf("raw_buffer: OK\n");
    return 0;
}
