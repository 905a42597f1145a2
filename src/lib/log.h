/* log.h: one line per event, key=value.
 *
 * Every line is "<time> <ident>[<pid>] level=<lvl> <fields>"; callers
 * write "event=<name>" first, then session=, user=, mailbox=, channel=
 * as they apply. Values that may hold spaces or quotes go through logq().
 * Output goes to stderr unless log_open() chose syslog.
 */
#ifndef TANDEM_LOG_H
#define TANDEM_LOG_H

enum log_level { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_NOTICE, LOG_LVL_WARN, LOG_LVL_ERR };

/* ident: program name in each line; use_syslog: 1 sends lines to syslog
 * (facility mail) instead of stderr; min: lowest level written. */
void log_open(const char *ident, int use_syslog, enum log_level min);
void log_set_level(enum log_level min);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_LVL_NOTICE, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_err(...) log_msg(LOG_LVL_ERR, __VA_ARGS__)

/* Dies: logs at level=fatal and aborts (broken invariants only). */
__attribute__((noreturn, format(printf, 1, 2))) void fatal(const char *fmt, ...);

#define LOGQ_MAX 600
/* Returns s itself when it is safe as a bare value (non-empty, no space,
 * quote, backslash, '=' or control byte), else a "quoted" copy in out,
 * escaping " and \ and truncating to fit. NULL gives "-". */
const char *logq(char out[LOGQ_MAX], const char *s);

#endif
