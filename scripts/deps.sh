#!/bin/sh
# Installs the Debian packages a target needs, only when one is missing.
# Usage: scripts/deps.sh build|check|demo|bench
# Runs apt-get (as root) at most once per call; prints nothing when all is there.
set -eu
build="gcc make pkg-config libsqlite3-dev libssl-dev zlib1g-dev libcrypt-dev openssl python3"
check="$build clang libclang-rt-14-dev swaks isync sqlite3 procps cyrus-imapd cyrus-replication cyrus-admin sasl2-bin"
bench_pkgs="$check strace"
case "${1:-build}" in
  build) want="$build" ;;
  check) want="$check" ;;
  demo)  want="$build" ;;
  bench) want="$bench_pkgs" ;;
  *) echo "deps.sh: unknown target '$1'" >&2; exit 2 ;;
esac
missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "deps.sh: missing Debian packages:$missing (run as root, or install them)" >&2
  exit 1
fi
echo "deps.sh: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# Installing cyrus-imapd must not start a system Cyrus (the interop tests run
# their own throwaway instances): deny service starts during the install.
guard=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1
fi
rc=0
apt-get update -qq || rc=$?
# shellcheck disable=SC2086
[ "$rc" = 0 ] && { apt-get install -y -qq --no-install-recommends $missing || rc=$?; }
[ -n "$guard" ] && rm -f /usr/sbin/policy-rc.d
exit $rc
