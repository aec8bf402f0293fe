# muster-coordinator %pre: the service user.
getent group muster >/dev/null || groupadd --system muster
getent passwd muster >/dev/null || useradd --system --gid muster --home-dir /var/lib/muster \
    --no-create-home --shell /sbin/nologin --comment "Muster coordinator" muster
exit 0
