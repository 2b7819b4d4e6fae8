#!/usr/bin/env bash
# Regenerates docs/api.md from crates/backup-server/openapi.json (a test checks they agree).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q -p backup-server -- api-md > docs/api.md
