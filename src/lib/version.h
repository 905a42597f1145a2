/* version.h: tandem's version, the one place it is written.
 *
 * MAJOR.MINOR.PATCH. 0.x: the on-disk store and the configuration may
 * still change between minor versions (docs/operations.md says how to
 * upgrade); the wire protocol is Cyrus 3.6's replication protocol and
 * IMAP4rev1/LMTP, which do not change with it. Shown by `tandem
 * --version`, `tandem status` and the metrics page (tandem_info).
 */
#ifndef TANDEM_VERSION_H
#define TANDEM_VERSION_H

#define TANDEM_VERSION "0.9.0"

#endif
