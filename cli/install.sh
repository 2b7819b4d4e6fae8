#!/usr/bin/env bash
# Installs the data-backup-manager CLI (and backup-server) into ~/.vrooli/bin (PRD "CLI Interface
# Contract": install_script, mode 755, ~/.vrooli/bin on PATH).
#
# Usage: cli/install.sh [--from-binary DIR]
#   Without arguments it builds the release binaries with cargo (the scenario's setup step).
#   --from-binary DIR installs prebuilt binaries from DIR instead.
# Environment: VROOLI_BIN_DIR (default ~/.vrooli/bin), SHELL_PROFILE (default: ~/.bashrc, or
# ~/.zshrc for zsh), CARGO_TARGET_DIR (where cargo builds).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${VROOLI_BIN_DIR:-$HOME/.vrooli/bin}"
from=""
if [ "${1:-}" = "--from-binary" ]; then
  from="${2:?--from-binary needs a directory}"
fi

if [ -z "$from" ]; then
  command -v cargo >/dev/null 2>&1 || { echo "error: cargo not found (install Rust from https://rustup.rs or use --from-binary DIR)" >&2; exit 1; }
  (cd "$root" && cargo build --release --locked -p backup-cli -p backup-server)
  from="${CARGO_TARGET_DIR:-$root/target}/release"
fi

mkdir -p "$bin_dir"
for b in data-backup-manager backup-server; do
  if [ ! -x "$from/$b" ]; then
    echo "error: $from/$b not found or not executable" >&2
    exit 1
  fi
  # Copy to a temporary name, then rename: a running copy is never overwritten in place.
  install -m 755 "$from/$b" "$bin_dir/.$b.new"
  mv -f "$bin_dir/.$b.new" "$bin_dir/$b"
done
chmod 755 "$bin_dir/data-backup-manager" "$bin_dir/backup-server"

# Add the directory to PATH in the shell profile when it is missing there.
profile="${SHELL_PROFILE:-}"
if [ -z "$profile" ]; then
  case "$(basename "${SHELL:-bash}")" in
    zsh) profile="$HOME/.zshrc" ;;
    *) profile="$HOME/.bashrc" ;;
  esac
fi
line="export PATH=\"$bin_dir:\$PATH\""
if ! grep -qsF "$bin_dir" "$profile"; then
  printf '\n# Added by data-backup-manager cli/install.sh\n%s\n' "$line" >> "$profile"
  echo "added $bin_dir to PATH in $profile (open a new shell or: source $profile)"
fi
echo "installed data-backup-manager and backup-server into $bin_dir"
