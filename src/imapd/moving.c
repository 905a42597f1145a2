/* moving.c: IMAP and a user being moved to another store (store_move.h):
 * its logins are refused with NO [UNAVAILABLE] (naming the new store to
 * whoever gives the user's password), and its open sessions end with
 * BYE [UNAVAILABLE] at the next command or while idle. */
#include "imapd/imapd-private.h"

#include "lib/log.h"

int imapd_login_moving(struct imapd_session *s, const char *user, const char *password)
{
	struct store_move m;
	struct terr err = { 0 };
	int r = store_move_login(s->st, user, password, &m, &err);
	if (r < 0)
		log_warn("event=move_check_fail session=%s error=\"%s\"", s->env->session_id, err.msg);
	if (r != 1)
		return 0;
	char q[LOGQ_MAX], text[300];
	log_notice("event=login_refused session=%s user=%s peer=%s reason=user_%s target=%s", s->env->session_id,
		   logq(q, user), s->env->peer, store_move_state_name(m.state), m.target);
	imapd_no(s, "UNAVAILABLE", "User %s; try again later", store_move_text(&m, text, sizeof text));
	return 1;
}

int imapd_moving_bye(struct imapd_session *s)
{
	if (!s->user || s->dead || !store_move_changed(s->st, &s->move_stamp))
		return 0;
	struct store_move m;
	struct terr err = { 0 };
	if (store_move_get(s->st, s->user, &m, &err) < 0) {
		/* looked at again at the next boundary */
		s->move_stamp.valid = 0;
		log_warn("event=move_check_fail session=%s error=\"%s\"", s->env->session_id, err.msg);
		return 0;
	}
	if (m.state == STORE_MOVE_NONE)
		return 0;
	char text[300];
	imapd_log_event(s, "session_bye", s->sel ? s->sel->name : NULL, "reason=user_%s target=%s",
			store_move_state_name(m.state), m.target);
	imapd_printf(s, "* BYE [UNAVAILABLE] User %s\r\n", store_move_text(&m, text, sizeof text));
	imapd_flush(s);
	s->moved_out = 1;
	s->dead = 1;
	return 1;
}
