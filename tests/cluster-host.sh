#!/bin/bash
# Runs a command on a host staged like a cluster node, without changing the machine's mounts:
#
#   bash tests/cluster-host.sh USER MOUNTS COMMAND [ARG...]      (as root)
#
# MOUNTS is a ':'-separated list of directories, as tests/run_cluster.rs reads it from
# LADE_TEST_CLUSTER_MOUNTS (the caller passes that on to the tests). In a new, private mount
# namespace, a tmpfs is mounted on each: mode 1777 under /tmp (a job scheduler's per-job
# scratch), owned by USER elsewhere (an automounted or NFS directory in the home). Then
# COMMAND runs there, still as root (it drops to USER itself, e.g. with runuser). In a user
# namespace these submounts are locked to the trees above them, which is what breaks a bind of
# /tmp or of the home directory made without MS_REC (issue 12). The mount points are created
# if missing and left in place, empty; the mounts vanish with the namespace.
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 USER MOUNTS COMMAND [ARG...]" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "$0: run as root" >&2; exit 1; }
user=$1 mounts=$2
shift 2
if [ -z "${LADE_CLUSTER_HOST_NS:-}" ]; then
    # --propagation private: nothing mounted here reaches the machine's namespace.
    exec unshare --mount --propagation private -- \
        env LADE_CLUSTER_HOST_NS=1 bash "$0" "$user" "$mounts" "$@"
fi
unset LADE_CLUSTER_HOST_NS
uid=$(id -u "$user")
gid=$(id -g "$user")
IFS=: read -r -a dirs <<< "$mounts"
for d in "${dirs[@]}"; do
    case "$d" in
        /tmp/*)
            mkdir -p "$d"
            mount -t tmpfs -o mode=1777,size=64m lade-job-scratch "$d" ;;
        /*)
            [ -d "$d" ] || install -d -o "$uid" -g "$gid" "$d"
            mount -t tmpfs -o "mode=0755,uid=$uid,gid=$gid,size=64m" lade-automount "$d" ;;
        *) echo "$0: $d: not an absolute path" >&2; exit 2 ;;
    esac
done
exec "$@"
