# muster-agent %preun: on erase (not upgrade), stop and disable the agent. KillMode=process: the
# Zato components it started keep running.
if [ "$1" -eq 0 ] && command -v systemctl >/dev/null; then
    systemctl --no-reload disable --now muster-agent.service >/dev/null 2>&1 || :
fi
exit 0
