# Sourced by the scripts that run on the GPU machine, from the repository's root there (which has no .NET SDK).
# enter_device_package ROOT: unpacks ROOT/.device/pkg.txz (scripts/pack-device.sh, carried by the device call) into /tmp/pkg
# with libmoegs.so beside it and changes into it; exits the script where the package was not carried.
enter_device_package() {
  local root=$1
  [ -f "$root/.device/pkg.txz" ] || { echo "no .device/pkg.txz: run bash scripts/pack-device.sh on the dev machine and carry .device"; exit 1; }
  rm -rf /tmp/pkg && tar xJf "$root/.device/pkg.txz" -C /tmp && cp "$root/.device/libmoegs.so" /tmp/pkg/
  cd /tmp/pkg || exit 1
}
