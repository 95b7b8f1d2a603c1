# Sourced by the scripts that take a tool from Debian's archive without installing anything.
# debian_files DIR POOL DEB FILE...: downloads DEB from the archive's pool/POOL/ and copies each
# FILE (a path inside the package, e.g. usr/bin/promtool) to DIR/FILE. Needs curl and dpkg-deb.
debian_files() {
  local dir=$1 pool=$2 deb=$3
  shift 3
  mkdir -p "$dir"
  curl -sSfL -o "$dir/$deb" "http://deb.debian.org/debian/pool/$pool/$deb"
  dpkg-deb -x "$dir/$deb" "$dir/extract"
  local file
  for file in "$@"; do
    mkdir -p "$dir/$(dirname "$file")"
    cp "$dir/extract/$file" "$dir/$file"
  done
  rm -rf "$dir/extract" "$dir/$deb"
}
