/* Internal error reporting: set a thread-local one-line message and return a status. */
#ifndef OPTVQ_CORE_ERROR_H
#define OPTVQ_CORE_ERROR_H
#include "optvq/optvq.h"

#if defined(__GNUC__)
#define OPTVQ_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define OPTVQ_PRINTF(a, b)
#endif

/* Records the message and returns `status`, so callers can `return optvq_fail(...)`. */
optvq_status optvq_fail(optvq_status status, const char *fmt, ...) OPTVQ_PRINTF(2, 3);
void optvq_clear_error(void);
/* The status of the last optvq_fail on this thread (OPTVQ_OK after a clear). */
optvq_status optvq_last_status(void);

/* Propagate a failing status. */
#define OPTVQ_TRY(expr)                     \
    do {                                    \
        optvq_status try_status_ = (expr);  \
        if (try_status_ != OPTVQ_OK)        \
            return try_status_;             \
    } while (0)

#endif
