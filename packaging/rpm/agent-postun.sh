# muster-agent %postun: on upgrade, restart a running agent with the new binary (its components
# keep running). RPM has no purge: erasing keeps /var/lib/muster-agent (the host's identity).
if [ "$1" -ge 1 ] && command -v systemctl >/dev/null; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    systemctl try-restart muster-agent.service >/dev/null 2>&1 || :
fi
exit 0
