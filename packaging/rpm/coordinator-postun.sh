# muster-coordinator %postun: on upgrade, restart a running service with the new binary. RPM has
# no purge: erasing keeps /var/lib/muster and the muster user (remove them by hand).
if [ "$1" -ge 1 ] && command -v systemctl >/dev/null; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    systemctl try-restart muster-coordinator.service >/dev/null 2>&1 || :
fi
exit 0
