/* cmd_idle.c: IDLE (RFC 2177).
 *
 * After "+ idling" the parser is told to expect DONE. Until it comes,
 * the selected mailbox (if any) is polled every IMAPD_IDLE_POLL_MS and
 * what changed is announced (EXPUNGE included) and sent at once. The
 * whole IDLE lasts at most IMAP_IDLE_TIMEOUT seconds (clients restart it
 * every 29 minutes); then the session ends as any idle session does.
 */
#include "imapd/imapd-private.h"

#include "lib/limits.h"

#include <time.h>

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sends what changed in the selected mailbox; -1 when it is gone. */
static int idle_poll(struct imapd_session *s)
{
	if (!s->sel)
		return 0;
	if (imapd_view_poll(s) < 0) {
		imapd_printf(s, "* BYE The selected mailbox was deleted or renamed\r\n");
		imapd_log_event(s, "mailbox_gone", s->sel->name, "%s", "");
		return -1;
	}
	imapd_view_announce(s, 1, 0);
	return imapd_flush(s);
}

int imapd_cmd_idle(struct imapd_session *s, const struct imap_cmd *cmd)
{
	(void)cmd;	/* invalid once the parser reads on */
	imapd_printf(s, "+ idling\r\n");
	imap_parser_expect(s->p, IMAP_EXPECT_DONE);
	if (idle_poll(s) < 0 || imapd_flush(s) < 0)
		return -1;
	long long deadline = now_ms() + (long long)IMAP_IDLE_TIMEOUT * 1000;
	int polls = 0;
	for (;;) {
		long long left = deadline - now_ms();
		if (left <= 0) {
			imapd_printf(s, "* BYE Autologout; idle for too long\r\n");
			imapd_log_event(s, "idle_timeout", s->sel ? s->sel->name : NULL, "polls=%d", polls);
			return -1;
		}
		int wait = s->sel ? IMAPD_IDLE_POLL_MS : (left > IMAPD_READ_SLICE_MS ? IMAPD_READ_SLICE_MS : (int)left);
		int ev = imapd_next_event(s, wait);
		switch (ev) {
		case IMAP_DONE:
			return 0;	/* the dispatcher sends the updates and OK */
		case IMAP_ERROR:
			imapd_bad(s, NULL, "%s", imap_parser_error(s->p)->msg);
			return imap_parser_error(s->p)->fatal ? -1 : 0;
		case IMAPD_EV_TIMEOUT:
			polls++;
			if (idle_poll(s) < 0)
				return -1;
			break;
		case IMAPD_EV_STOP:
			imapd_printf(s, "* BYE Server shutting down\r\n");
			return -1;
		case IMAPD_EV_CLOSED:
			return -1;
		default:
			/* nothing else comes while DONE is expected */
			break;
		}
	}
}
