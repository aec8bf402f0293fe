# muster-coordinator %post: the state directory (so that `init` works as the service user before
# the first start), and the unit enabled but not started: it starts once `init` has run.
[ -d /var/lib/muster ] || install -d -o muster -g muster -m 0700 /var/lib/muster
if [ "$1" -eq 1 ] && command -v systemctl >/dev/null; then
    systemctl --no-reload enable muster-coordinator.service >/dev/null 2>&1 || :
fi
exit 0
