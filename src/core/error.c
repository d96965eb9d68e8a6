#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[512];
static _Thread_local optvq_status last_status;

optvq_status optvq_fail(optvq_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    last_status = status;
    /* formatted aside first: callers may pass optvq_last_error() itself as an argument ("%s: %s", name,
     * optvq_last_error()), and vsnprintf into the buffer it reads from is undefined */
    char message[sizeof last_error];
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    memcpy(last_error, message, sizeof message);
    /* one line, whatever a file put into the message (names, dtypes, ...) */
    for (char *p = last_error; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return status;
}

void optvq_clear_error(void)
{
    last_error[0] = '\0';
    last_status = OPTVQ_OK;
}

optvq_status optvq_last_status(void) { return last_status; }

const char *optvq_last_error(void) { return last_error; }

const char *optvq_status_string(optvq_status status)
{
    switch (status) {
    case OPTVQ_OK: return "ok";
    case OPTVQ_ERR_INVALID_ARG: return "invalid argument";
    case OPTVQ_ERR_NOMEM: return "out of memory";
    case OPTVQ_ERR_IO: return "I/O error";
    case OPTVQ_ERR_FORMAT: return "malformed input";
    case OPTVQ_ERR_NUMERIC: return "non-finite value";
    case OPTVQ_ERR_STATE: return "call out of order";
    }
    return "unknown status";
}

#define STR2(x) #x
#define STR(x) STR2(x)
const char *optvq_version(void)
{
    return STR(OPTVQ_VERSION_MAJOR) "." STR(OPTVQ_VERSION_MINOR) "." STR(OPTVQ_VERSION_PATCH);
}
