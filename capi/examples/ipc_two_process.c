/* Two processes share one buffer through unibuf's C API: the consumer sends its unreconciled
 * list, the producer reconciles it with its own and sends the reconciled list back (the
 * consumer validates it against its own list), then the producer allocates, writes, and sends
 * the object read-only; the consumer reads it and is refused a writable pointer.
 *
 * Usage: ipc_two_process [--device]   (--device: device accessors, so the buffer is a dma-buf
 * from a heap, as in the VM; default: CPU accessors, a memfd on any machine) */
#include "unibuf.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(call)                                                                         \
    do {                                                                                    \
        ub_status st_ = (call);                                                             \
        if (st_ != UB_SUCCESS) {                                                            \
            fprintf(stderr, "[%s] %s:%d: %s: %s: %s\n", who, __FILE__, __LINE__, #call,     \
                    ub_status_name(st_), ub_last_error_message());                          \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

static const char *who = "producer";
static const size_t SIZE = 256 * 1024;

static ub_attr_list *make_list(ub_module *m, const char *name, uint32_t kind, uint32_t perm) {
    ub_attr_list *l = NULL;
    CHECK(ub_attr_list_create(m, &l));
    uint8_t types = UB_TYPE_RAW;
    uint64_t size = SIZE, align = 4096;
    bool cpu = true;
    ub_attr_kv kv[] = {
        {UB_KEY_TYPES, &types, 1},
        {UB_KEY_RAW_SIZE, &size, 8},
        {UB_KEY_RAW_ALIGN, &align, 8},
        {UB_KEY_NEED_CPU_ACCESS, &cpu, 1},
        {UB_KEY_REQUIRED_PERMISSION, &perm, 4},
        {UB_KEY_ACCESSOR_NAME, name, strlen(name) + 1},
        {UB_KEY_ACCESSOR_KIND, &kind, 4},
    };
    CHECK(ub_attr_list_set_attrs(l, kv, sizeof kv / sizeof kv[0]));
    return l;
}

static int consumer(const char *sock, uint32_t kind) {
    who = "consumer";
    /* The fork copied the producer's handles (its module and listener): count from here. */
    size_t inherited = ub_live_handle_count();
    ub_module *m = NULL;
    ub_endpoint *ep = NULL;
    CHECK(ub_module_open(&m));
    for (int i = 0; ub_endpoint_connect_abstract(sock, &ep) != UB_SUCCESS; i++) {
        if (i == 200) {
            fprintf(stderr, "[consumer] connect: %s\n", ub_last_error_message());
            return 1;
        }
        usleep(10000);
    }
    ub_attr_list *own = make_list(m, "consumer", kind, UB_PERM_READ_ONLY);
    const ub_attr_list *mine[] = {own};
    CHECK(ub_ipc_export_attr_lists(ep, mine, 1));

    ub_attr_list *rec = NULL;
    CHECK(ub_ipc_import_reconciled(ep, mine, 1, 10000, &rec));
    printf("[consumer] imported the reconciled list, validated against its own\n");

    ub_obj *obj = NULL;
    CHECK(ub_ipc_import_obj(ep, UB_PERM_AUTO, mine, 1, 10000, &obj));
    uint32_t perm = 0;
    CHECK(ub_obj_get_permission(obj, &perm));
    void *wp = NULL;
    ub_status st = ub_obj_get_cpu_ptr(obj, &wp);
    if (perm != UB_PERM_READ_ONLY || st != UB_ERR_ACCESS_DENIED) {
        fprintf(stderr, "[consumer] permission %u, writable pointer: %s\n", perm, ub_status_name(st));
        return 1;
    }
    printf("[consumer] read-only handle; writable pointer refused: %s\n", ub_last_error_message());
    ub_obj *rw = NULL;
    st = ub_obj_dup_with_reduced_perm(obj, UB_PERM_READ_WRITE, &rw);
    if (st != UB_ERR_ACCESS_DENIED) {
        fprintf(stderr, "[consumer] raising the permission: %s\n", ub_status_name(st));
        return 1;
    }
    const unsigned char *p = NULL;
    CHECK(ub_obj_get_const_cpu_ptr(obj, (const void **)&p));
    CHECK(ub_obj_begin_cpu_access(obj, UB_CPU_READ));
    for (size_t i = 0; i < SIZE; i += 4096) {
        if (p[i] != (unsigned char)(i / 4096)) {
            fprintf(stderr, "[consumer] byte %zu is %u\n", i, p[i]);
            return 1;
        }
    }
    CHECK(ub_obj_end_cpu_access(obj, UB_CPU_READ));
    printf("[consumer] read the producer's data\n");
    /* Tell the producer we are done. */
    CHECK(ub_ipc_export_attr_lists(ep, mine, 1));
    CHECK(ub_obj_free(obj));
    CHECK(ub_attr_list_free(rec));
    CHECK(ub_attr_list_free(own));
    CHECK(ub_endpoint_free(ep));
    CHECK(ub_module_close(m));
    if (ub_live_handle_count() != inherited) {
        fprintf(stderr, "[consumer] %zu handles leaked\n", ub_live_handle_count() - inherited);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    int device = argc > 1 && strcmp(argv[1], "--device") == 0;
    uint32_t kind = device ? UB_ACCESSOR_DEVICE : UB_ACCESSOR_CPU;
    char sock[64];
    snprintf(sock, sizeof sock, "unibuf-capi-example-%d", (int)getpid());

    ub_module *m = NULL;
    ub_listener *lis = NULL;
    CHECK(ub_module_open(&m));
    CHECK(ub_listener_bind_abstract(sock, &lis));
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        int rc = consumer(sock, kind);
        fflush(stdout);
        _exit(rc);
    }
    ub_endpoint *ep = NULL;
    CHECK(ub_listener_accept(lis, 10000, &ep));
    ub_attr_list *own = make_list(m, "producer", kind, UB_PERM_READ_WRITE);
    ub_attr_list *theirs = NULL;
    CHECK(ub_ipc_import_attr_lists(ep, 10000, &theirs));
    size_t slots = 0;
    CHECK(ub_attr_list_get_slot_count(theirs, &slots));
    printf("[producer] imported %zu unreconciled list(s)\n", slots);

    const ub_attr_list *all[] = {own, theirs};
    ub_attr_list *rec = NULL, *conflict = NULL;
    CHECK(ub_attr_list_reconcile(all, 2, &rec, &conflict));
    CHECK(ub_ipc_export_reconciled(ep, rec));

    ub_obj *obj = NULL;
    CHECK(ub_obj_alloc(rec, &obj));
    unsigned char *p = NULL;
    CHECK(ub_obj_get_cpu_ptr(obj, (void **)&p));
    CHECK(ub_obj_begin_cpu_access(obj, UB_CPU_WRITE));
    for (size_t i = 0; i < SIZE; i += 4096) p[i] = (unsigned char)(i / 4096);
    CHECK(ub_obj_end_cpu_access(obj, UB_CPU_WRITE));
    CHECK(ub_ipc_export_obj(ep, obj, UB_PERM_READ_ONLY));
    printf("[producer] exported the object read-only\n");

    ub_attr_list *done = NULL;
    CHECK(ub_ipc_import_attr_lists(ep, 10000, &done));
    int status = 0;
    waitpid(child, &status, 0);
    CHECK(ub_attr_list_free(done));
    CHECK(ub_obj_free(obj));
    CHECK(ub_attr_list_free(rec));
    CHECK(ub_attr_list_free(theirs));
    CHECK(ub_attr_list_free(own));
    CHECK(ub_endpoint_free(ep));
    CHECK(ub_listener_free(lis));
    CHECK(ub_module_close(m));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "[producer] consumer failed (status %d)\n", status);
        return 1;
    }
    if (ub_live_handle_count() != 0) {
        fprintf(stderr, "[producer] %zu handles leaked\n", ub_live_handle_count());
        return 1;
    }
    printf("ipc_two_process: OK\n");
    return 0;
}
