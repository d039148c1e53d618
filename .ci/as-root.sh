# as_root CMD...: runs CMD as root (directly, or through sudo), or says what to install by hand.
# Sourced by the install scripts in this folder.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "$(basename "$0"): run as root or install sudo (needs: $*)" >&2
    exit 1
  fi
}
