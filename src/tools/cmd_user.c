/* cmd_user.c: tandem user add|del|list|passwd|unmove. */
#include "tools/tools.h"

#include "lib/xalloc.h"
#include "store/store.h"
#include "store/store_move.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage[] =
	"usage: tandem user add [--no-password] USER   (password: first line of standard input)\n"
	"       tandem user del USER\n"
	"       tandem user list\n"
	"       tandem user passwd USER                (password: first line of standard input)\n"
	"       tandem user unmove USER\n"
	"\n'add' creates the user and its INBOX; 'del' removes the user with all its mail.\n"
	"'list' prints one user a line; a user with a move record (tandem move-user)\n"
	"gets a second, tab-separated column: \"locked move-to=HOST since=TIME\" while\n"
	"it is being moved, \"moved-to=HOST since=TIME\" once it was (it is then no\n"
	"longer here, and LMTP and IMAP answer with a temporary error naming HOST).\n"
	"'unmove' clears the record: a locked user takes mail and logins again; a\n"
	"moved user's name is free (LMTP: no such user) once the MTA and clients go\n"
	"to its new store.\n";

/* The move records, for list. */
struct moves {
	char **users;
	struct store_move *m;
	size_t n;
};

static int collect_move(const char *userid, const struct store_move *m, void *rock)
{
	struct moves *mv = rock;
	mv->users = xrealloc(mv->users, (mv->n + 1) * sizeof *mv->users);
	mv->m = xrealloc(mv->m, (mv->n + 1) * sizeof *mv->m);
	mv->users[mv->n] = xstrdup(userid);
	mv->m[mv->n++] = *m;
	return 0;
}

struct list_rock {
	struct moves *mv;
	size_t next;	/* records printed so far (both lists are in userid order) */
};

static void print_line(const char *userid, const struct store_move *m)
{
	if (!m) {
		printf("%s\n", userid);
		return;
	}
	char when[32];
	time_t tt = (time_t)m->since;
	struct tm tm;
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&tt, &tm));
	printf("%s\t%s%s since=%s\n", userid, m->state == STORE_MOVE_MOVED ? "moved-to=" : "locked move-to=", m->target,
	       when);
}

static int print_user(const char *userid, void *rock)
{
	struct list_rock *lr = rock;
	struct moves *mv = lr->mv;
	/* records of users no longer here that sort before this one */
	while (lr->next < mv->n && strcmp(mv->users[lr->next], userid) < 0) {
		print_line(mv->users[lr->next], &mv->m[lr->next]);
		lr->next++;
	}
	if (lr->next < mv->n && !strcmp(mv->users[lr->next], userid)) {
		print_line(userid, &mv->m[lr->next]);
		lr->next++;
	} else {
		print_line(userid, NULL);
	}
	return 0;
}

int cmd_user(struct tool *t, int argc, char **argv)
{
	if (tool_help(argc, argv, usage))
		return EXIT_OK;
	if (argc < 2)
		return tool_usage(usage);
	const char *sub = argv[1];
	struct terr err = { 0 };
	struct buf pw = BUF_INIT;
	int rc = EXIT_OK;
	if (!strcmp(sub, "add") && (argc == 3 || (argc == 4 && !strcmp(argv[2], "--no-password")))) {
		int nopw = argc == 4;
		const char *user = argv[argc - 1];
		if (!nopw && tool_read_password(&pw, &err) < 0)
			rc = tool_fail(&err);
		else if (store_user_create(t->st, user, nopw ? NULL : pw.ptr, &err) < 0)
			rc = tool_fail(&err);
		else
			printf("user %s created\n", user);
	} else if (!strcmp(sub, "del") && argc == 3) {
		if (store_user_delete(t->st, argv[2], &err) < 0)
			rc = tool_fail(&err);
		else
			printf("user %s deleted\n", argv[2]);
	} else if (!strcmp(sub, "list") && argc == 2) {
		struct moves mv = { NULL, NULL, 0 };
		struct list_rock lr = { &mv, 0 };
		if (store_move_list(t->st, collect_move, &mv, &err) < 0 ||
		    store_user_list(t->st, print_user, &lr, &err) < 0)
			rc = tool_fail(&err);
		for (; rc == EXIT_OK && lr.next < mv.n; lr.next++)
			print_line(mv.users[lr.next], &mv.m[lr.next]);
		for (size_t k = 0; k < mv.n; k++)
			free(mv.users[k]);
		free(mv.users);
		free(mv.m);
	} else if (!strcmp(sub, "passwd") && argc == 3) {
		if (tool_read_password(&pw, &err) < 0 || store_user_passwd(t->st, argv[2], pw.ptr, &err) < 0)
			rc = tool_fail(&err);
		else
			printf("password of %s set\n", argv[2]);
	} else if (!strcmp(sub, "unmove") && argc == 3) {
		struct store_move m;
		if (store_move_get(t->st, argv[2], &m, &err) < 0 || store_move_unlock(t->st, argv[2], &err) < 0)
			rc = tool_fail(&err);
		else if (m.state == STORE_MOVE_MOVED)
			printf("move record of %s (moved to %s) cleared\n", argv[2], m.target);
		else
			printf("user %s unlocked\n", argv[2]);
	} else {
		rc = tool_usage(usage);
	}
	if (pw.ptr)
		memset(pw.ptr, 0, pw.cap);
	buf_free(&pw);
	return rc;
}
