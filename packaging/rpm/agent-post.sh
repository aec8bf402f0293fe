# muster-agent %post: the state directory and /opt/zato (the unit's ReadWritePaths= names it), and
# the unit enabled but not started: configure /etc/muster/agent.toml first.
[ -d /var/lib/muster-agent ] || install -d -m 0700 /var/lib/muster-agent
[ -d /opt/zato ] || install -d -m 0755 /opt/zato
if [ "$1" -eq 1 ] && command -v systemctl >/dev/null; then
    systemctl --no-reload enable muster-agent.service >/dev/null 2>&1 || :
fi
exit 0
