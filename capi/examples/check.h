/* CHECK(call): the examples' way to stop at the first failing ub_ call, printing its status
 * and the thread's last-error message. */
#ifndef UB_EXAMPLE_CHECK_H
#define UB_EXAMPLE_CHECK_H
#include "unibuf.h"
#include <stdio.h>
#include <stdlib.h>

#define CHECK(call)                                                                         \
    do {                                                                                    \
        ub_status st_ = (call);                                                             \
        if (st_ != UB_SUCCESS) {                                                            \
            fprintf(stderr, "%s:%d: %s: %s: %s\n", __FILE__, __LINE__, #call,               \
                    ub_status_name(st_), ub_last_error_message());                          \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

#endif
