/* log.c: see log.h. Logging state is per process and set once at start
 * (ident, destination, level); it holds no session data. */
#include "lib/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static struct {
	char ident[32];
	int use_syslog;
	enum log_level min;
} logcfg = { "tandem", 0, LOG_LVL_INFO };

static const char *lvl_name[] = { "debug", "info", "notice", "warn", "error" };
static const int lvl_syslog[] = { LOG_DEBUG, LOG_INFO, LOG_NOTICE, LOG_WARNING, LOG_ERR };

void log_open(const char *ident, int use_syslog, enum log_level min)
{
	snprintf(logcfg.ident, sizeof logcfg.ident, "%s", ident);
	logcfg.use_syslog = use_syslog;
	logcfg.min = min;
	if (use_syslog)
		openlog(logcfg.ident, LOG_PID, LOG_MAIL);
}

void log_set_level(enum log_level min)
{
	logcfg.min = min;
}

static void vlog_line(const char *lvl, int prio, const char *fmt, va_list ap)
{
	char msg[4096];
	vsnprintf(msg, sizeof msg, fmt, ap);
	if (logcfg.use_syslog) {
		syslog(prio, "level=%s %s", lvl, msg);
		return;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char when[32];
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ %s[%ld] level=%s %s\n", when, ts.tv_nsec / 1000000,
		logcfg.ident, (long)getpid(), lvl, msg);
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	if (lvl < logcfg.min)
		return;
	va_list ap;
	va_start(ap, fmt);
	vlog_line(lvl_name[lvl], lvl_syslog[lvl], fmt, ap);
	va_end(ap);
}

void fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog_line("fatal", LOG_CRIT, fmt, ap);
	va_end(ap);
	abort();
}

const char *logq(char out[LOGQ_MAX], const char *s)
{
	if (!s)
		return "-";
	int safe = *s != '\0';
	for (const char *p = s; *p && safe; p++)
		if (*p == ' ' || *p == '"' || *p == '\\' || *p == '=' || (unsigned char)*p < 0x20 || *p == 0x7f)
			safe = 0;
	if (safe)
		return s;
	size_t o = 0;
	out[o++] = '"';
	for (const char *p = s; *p && o < LOGQ_MAX - 4; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			out[o++] = '?';
		} else {
			out[o++] = (char)c;
		}
	}
	out[o++] = '"';
	out[o] = '\0';
	return out;
}
