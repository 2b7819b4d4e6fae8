#!/usr/bin/env bash
# A single-node Ceph RADOS Gateway (S3 API) on 127.0.0.1:7480 for tests, CI and trying the
# product. Test setup only: no authentication between the daemons, one in-memory OSD (data is
# lost when the OSD stops), fixed test keys. Never use it for real backups.
#
# Usage: scripts/s3-server.sh [start|stop|restart|status|env|destroy]
#   start    (default) install the Debian packages if missing, build the cluster if it is not
#            running, start the gateway, create the test user, write the env file. Does nothing
#            when the gateway already answers. Restarting only the gateway (after `stop`)
#            keeps every bucket: the monitor and the OSD keep running.
#   stop     stops the gateway process only (the outage test uses this); the cluster stays up.
#   restart  stop + start of the gateway.
#   status   exit 0 if the gateway answers.
#   env      prints the env file.
#   destroy  stops every daemon of this cluster and deletes its state.
#
# Environment: DBM_CEPH_DIR (state, default /var/tmp/dbm-ceph), DBM_S3_ENV (env file, default
# /tmp/dbm-s3.env), DBM_S3_PORT (default 7480), DBM_CEPH_MEM_BYTES (OSD capacity, default 16 GiB;
# memory is used only as data is written).
#
# Another port (DBM_S3_PORT=7481 DBM_S3_ENV=/tmp/dbm-s3-7481.env scripts/s3-server.sh start)
# starts a second gateway on the same cluster (same buckets and keys) that can be stopped
# without disturbing users of the first: the outage test does this.
#
# The env file sets AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and
# AWS_ALLOW_HTTP=true; `. /tmp/dbm-s3.env` (or `set -a; . /tmp/dbm-s3.env; set +a`) before use.
set -euo pipefail

DIR="${DBM_CEPH_DIR:-/var/tmp/dbm-ceph}"
ENV_FILE="${DBM_S3_ENV:-/tmp/dbm-s3.env}"
PORT="${DBM_S3_PORT:-7480}"
MEM_BYTES="${DBM_CEPH_MEM_BYTES:-17179869184}"
CONF="$DIR/ceph.conf"
NAME="client.rgw.dbm"
[ "$PORT" = 7480 ] || NAME="client.rgw.dbm$PORT"
ENDPOINT="http://127.0.0.1:$PORT"
# Fixed test keys (public: they are in this file). The gateway listens on 127.0.0.1 only.
ACCESS_KEY="DBMTESTACCESSKEY0001"
SECRET_KEY="dbm-test-secret-key-0001-not-for-production"
REGION="us-east-1"
USER_ID="dbm-test"

log() { echo "s3-server: $*" >&2; }

answers() {
  # Any HTTP answer (an anonymous ListBuckets gives an XML document) means the gateway is up.
  curl -s -o /dev/null -m 3 -w '%{http_code}' "$ENDPOINT/" 2>/dev/null | grep -q '^[1-5][0-9][0-9]$'
}

pid_alive() {
  local f="$1"
  [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

install_packages() {
  local need=()
  command -v ceph-mon >/dev/null 2>&1 || need+=(ceph-mon)
  command -v ceph-osd >/dev/null 2>&1 || need+=(ceph-osd)
  command -v ceph-mgr >/dev/null 2>&1 || need+=(ceph-mgr)
  command -v radosgw >/dev/null 2>&1 || need+=(radosgw)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  command -v uuidgen >/dev/null 2>&1 || need+=(uuid-runtime)
  if [ "${#need[@]}" -gt 0 ]; then
    log "installing ${need[*]} (about 90 s)"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
}

write_conf() {
  local fsid="$1"
  cat >"$CONF" <<EOF
[global]
fsid = $fsid
mon initial members = a
mon host = v2:127.0.0.1:3300,v1:127.0.0.1:6789
public network = 127.0.0.0/8
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 2
mon data avail crit = 1
run dir = $DIR/run
pid file = $DIR/run/\$name.pid
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
mon cluster log file = $DIR/log/cluster.log
keyring = $DIR/keyring

[mon]
mon data = $DIR/mon/\$cluster-\$id

[mgr]
mgr data = $DIR/mgr/\$cluster-\$id

[osd]
osd data = $DIR/osd/\$cluster-\$id
osd objectstore = memstore
memstore device bytes = $MEM_BYTES
osd max object name len = 460
osd max object namespace len = 64

[client]
ms mon client mode = crc

[client.rgw.dbm]
ms mon client mode = crc
rgw frontends = beast endpoint=127.0.0.1:$PORT
rgw data = $DIR/rgw
rgw dns name = 127.0.0.1
rgw enable usage log = false
rgw thread pool size = 64
EOF
}

ceph_() { timeout 60 ceph -c "$CONF" "$@"; }

cluster_up() {
  pid_alive "$DIR/run/mon.a.pid" && pid_alive "$DIR/run/osd.0.pid"
}

build_cluster() {
  log "building a single-node cluster in $DIR"
  stop_all
  rm -rf "$DIR"
  mkdir -p "$DIR"/{run,log,mon,mgr/ceph-x,osd/ceph-0,rgw}
  local fsid
  fsid="$(uuidgen)"
  write_conf "$fsid"
  # Auth is off, but mkfs still wants keyrings to exist.
  ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool "$DIR/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
    --cap mgr 'allow *' >/dev/null
  monmaptool --create --fsid "$fsid" --addv a '[v2:127.0.0.1:3300,v1:127.0.0.1:6789]' \
    "$DIR/monmap" >/dev/null
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring"
  ceph-mon -c "$CONF" -i a
  ceph_ mgr module disable dashboard >/dev/null 2>&1 || true
  ceph-mgr -c "$CONF" -i x
  local id
  id="$(ceph_ osd create)"
  ceph-osd -c "$CONF" -i "$id" --mkfs >/dev/null 2>&1
  ceph_ osd crush add "osd.$id" 1.0 host=localhost root=default >/dev/null 2>&1
  ceph-osd -c "$CONF" -i "$id"
  for _ in $(seq 60); do
    ceph_ osd stat 2>/dev/null | grep -q '1 up' && break
    sleep 1
  done
  ceph_ osd stat | grep -q '1 up' || { log "the OSD did not come up; see $DIR/log"; exit 1; }
}

start_gateway() {
  if ! pid_alive "$DIR/run/$NAME.pid"; then
    radosgw -c "$CONF" -n "$NAME" --rgw-frontends="beast endpoint=127.0.0.1:$PORT" \
      --ms-mon-client-mode=crc --rgw-data="$DIR/rgw"
  fi
  for _ in $(seq 120); do
    answers && return 0
    sleep 1
  done
  log "the gateway does not answer on $ENDPOINT; see $DIR/log/$NAME.log"
  exit 1
}

create_user() {
  if ! timeout 60 radosgw-admin -c "$CONF" -n client.admin user info --uid="$USER_ID" >/dev/null 2>&1; then
    timeout 60 radosgw-admin -c "$CONF" -n client.admin user create --uid="$USER_ID" \
      --display-name="data-backup-manager tests" --access-key="$ACCESS_KEY" \
      --secret-key="$SECRET_KEY" >/dev/null
  fi
}

write_env() {
  local tmp="$ENV_FILE.tmp.$$"
  cat >"$tmp" <<EOF
# Written by scripts/s3-server.sh: the local test gateway (Ceph RGW). Test keys only.
AWS_ENDPOINT_URL=$ENDPOINT
AWS_ACCESS_KEY_ID=$ACCESS_KEY
AWS_SECRET_ACCESS_KEY=$SECRET_KEY
AWS_REGION=$REGION
AWS_ALLOW_HTTP=true
EOF
  mv "$tmp" "$ENV_FILE"
}

stop_gateway() {
  local f="$DIR/run/$NAME.pid"
  if pid_alive "$f"; then
    local pid
    pid="$(cat "$f")"
    kill "$pid"
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

stop_all() {
  local n f
  for f in "$DIR"/run/client.rgw.*.pid "$DIR/run/osd.0.pid" "$DIR/run/mgr.x.pid" "$DIR/run/mon.a.pid"; do
    if pid_alive "$f"; then
      kill "$(cat "$f")" 2>/dev/null || true
      for _ in $(seq 50); do
        pid_alive "$f" || break
        sleep 0.2
      done
      pid_alive "$f" && kill -9 "$(cat "$f")" 2>/dev/null || true
    fi
  done
}

start() {
  if answers; then
    [ -s "$ENV_FILE" ] || write_env
    return 0
  fi
  install_packages
  if ! cluster_up; then
    [ "$PORT" = 7480 ] || { log "start the main gateway (port 7480) first"; exit 1; }
    build_cluster
  fi
  start_gateway
  create_user
  write_env
  log "gateway up on $ENDPOINT; env file $ENV_FILE"
}

case "${1:-start}" in
  start) start ;;
  stop) stop_gateway ;;
  restart) stop_gateway; start ;;
  status) answers ;;
  env) cat "$ENV_FILE" ;;
  destroy) stop_all; rm -rf "$DIR" "$ENV_FILE" ;;
  *) echo "usage: $0 [start|stop|restart|status|env|destroy]" >&2; exit 2 ;;
esac
