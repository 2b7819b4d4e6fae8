#!/usr/bin/env bash
# Regenerates docs/cli.md from the binary's own --help (tests/docs.rs checks they agree).
#   bash docs/gen-cli-md.sh [path/to/data-backup-manager]
set -euo pipefail
cd "$(dirname "$0")/.."
B="${1:-target/debug/data-backup-manager}"
[ -x "$B" ] || cargo build -q -p backup-cli
declare -A EX
EX[init]='DBM_PASSWORD=secret data-backup-manager --repo /srv/backups init'
EX[backup]='data-backup-manager backup files:/srv/app,files:/etc --type full --retention-days 30 --description "weekly full"
data-backup-manager backup files:/home --exclude "*.tmp" --exclude "/home/*/.cache" --json
PGHOST=127.0.0.1 PGUSER=postgres data-backup-manager backup postgres                 # logical: every database
data-backup-manager backup postgres:postgres://backup@db1:5432/postgres --database shop
data-backup-manager backup postgres --type base                                     # for point-in-time recovery'
EX[restore]='data-backup-manager restore latest --destination /tmp/r --verify
data-backup-manager restore 3f9a12bc --destination / --include /etc/nginx --overwrite
data-backup-manager restore latest --targets files:/srv/app --destination /tmp/app
data-backup-manager restore latest --format tar --include /srv/app > app.tar
data-backup-manager restore latest --targets postgres --database shop --target-database shop_copy
data-backup-manager restore latest --targets postgres --with-globals                # roles too, then every database
data-backup-manager restore latest --targets postgres --to-time "2026-12-04 09:30:00+01:00" --destination /var/lib/postgresql/15/restored --check
data-backup-manager restore latest --targets minio --destination minio:photos-copy'
EX[list]='data-backup-manager list --type full --target files --since 2026-11-01
data-backup-manager snapshots --json'
EX[ls]='data-backup-manager ls latest /etc -l'
EX[diff]='data-backup-manager diff 3f9a12bc latest     # + added, - removed, M content changed, T type changed, U metadata only'
EX[dump]='data-backup-manager dump latest /etc/hosts
data-backup-manager dump latest /etc --format tar | tar -t'
EX[verify]='data-backup-manager verify latest
data-backup-manager verify --wal          # every WAL segment missing between the oldest base backup and the newest archived one'
EX[check]='data-backup-manager check
data-backup-manager check --read-data-subset 10%
data-backup-manager check --read-data --json'
EX[forget]='data-backup-manager forget --keep-last 3 --keep-daily 7 --keep-weekly 4 --tz Europe/Berlin --dry-run
data-backup-manager forget --keep-within 30d --prune
data-backup-manager forget 3f9a12bc            # remove one snapshot, even a damaged one'
EX[prune]='data-backup-manager prune --dry-run'
EX[copy]='DBM_FROM_PASSWORD=local-pw DBM_TO_PASSWORD=s3-pw data-backup-manager copy --all --from-repo /srv/backups --to-repo s3://backups/prod
data-backup-manager --repo s3://backups/prod copy latest --to-repo /srv/restore-test --to-password-file /etc/dbm/test-pw'
EX[key]='DBM_NEW_PASSWORD=second data-backup-manager key add
data-backup-manager key list
data-backup-manager key remove 1a2b3c4d'
EX[repair-index]='data-backup-manager repair-index && data-backup-manager check --read-data'
EX[status]='data-backup-manager status
data-backup-manager status --json --verbose --targets test-data'
EX[schedule]='data-backup-manager schedule create --name nightly --cron "30 2 * * *" --timezone Europe/Berlin --targets test-data,files:/etc --type full --retention 30 --keep-daily 7
data-backup-manager schedule create --name drill --cron "0 4 * * 0" --drill
data-backup-manager schedule update --name nightly --cron "0 3 * * *"
data-backup-manager schedule disable --name nightly
data-backup-manager schedule list --json'
EX[run-scheduler]='DBM_DATABASE_URL=postgres://dbm@127.0.0.1/dbm data-backup-manager run-scheduler
data-backup-manager run-scheduler --once     # one pass, e.g. from a systemd timer'
EX[catalog]='data-backup-manager catalog rebuild
data-backup-manager catalog jobs --status failed --limit 20
data-backup-manager catalog audit --json'
EX[restore-point]='data-backup-manager restore-point create --name before-migration --targets test-data,files:/etc
data-backup-manager restore-point create --name pinned --snapshots 3f9a12bc,latest
data-backup-manager restore-point list'
EX[version]='data-backup-manager version --json'
EX[wal-push]="archive_command = '/usr/local/bin/data-backup-manager --repo /srv/backups wal-push --key-file /etc/dbm/wal.key %p'"
EX[wal-fetch]="restore_command = '/usr/local/bin/data-backup-manager --repo /srv/backups wal-fetch --key-file /etc/dbm/wal.key %f %p'"
EX[wal-config]='sudo -u postgres data-backup-manager --repo /srv/backups wal-config --key-file /var/lib/postgresql/dbm-wal.key --apply'
EX[wal-prune]='data-backup-manager wal-prune --window 7d --dry-run'
{
echo "# data-backup-manager command reference"
echo
echo "Global flags (\`--repo\`, \`--password-file\`, \`--config\`, \`--json\`, \`--quiet\`, \`--verbose\`, \`--no-lock\`) go before or after the command."
echo "Exit codes: 0 ok, 1 error (including usage errors), 2 warning (a partial backup, a file changed while read, \`check\` finding only leftovers)."
echo "Each section is the program's own \`--help\` (generated by \`docs/gen-cli-md.sh\`), then examples."
echo
echo '```text'; env -i "$B" --help; echo '```'
for c in init backup restore list ls diff dump verify check forget prune copy key repair-index status schedule run-scheduler catalog restore-point version wal-push wal-fetch wal-config wal-prune; do
  echo; echo "## $c"; echo; echo '```text'; env -i "$B" "$c" --help; echo '```'
  if [ "$c" = key ]; then for k in add list remove; do echo; echo '```text'; env -i "$B" key "$k" --help; echo '```'; done; fi
  if [ "$c" = schedule ]; then for k in list create update delete enable disable; do echo; echo '```text'; env -i "$B" schedule "$k" --help; echo '```'; done; fi
  if [ "$c" = catalog ]; then for k in rebuild jobs audit; do echo; echo '```text'; env -i "$B" catalog "$k" --help; echo '```'; done; fi
  if [ "$c" = restore-point ]; then for k in create list delete; do echo; echo '```text'; env -i "$B" restore-point "$k" --help; echo '```'; done; fi
  echo; echo "Examples:"; echo; echo '```sh'; echo "${EX[$c]}"; echo '```'
done
} > docs/cli.md
