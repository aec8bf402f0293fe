# muster-coordinator %preun: on erase (not upgrade), stop and disable the service.
if [ "$1" -eq 0 ] && command -v systemctl >/dev/null; then
    systemctl --no-reload disable --now muster-coordinator.service >/dev/null 2>&1 || :
fi
exit 0
