#!/usr/bin/env bash
# Puts NVIDIA's PTX assembler (ptxas) and SASS disassembler (cuobjdump, nvdisasm) of CUDA 11.8, from
# Debian 12's non-free nvidia-cuda-toolkit package, in .tools/cuda/ without installing anything,
# for machines without a CUDA toolkit. KernelCompilationTests then assembles the kernels for sm_90
# and checks their registers; the bench's --emit-ptx writes the PTX to read by hand:
#   MOEGS_PTXAS=$(bash scripts/ptxas.sh) dotnet test
#   dotnet run -c Release --project bench/MoeGpuStats.Bench -- --emit-ptx out/ptx   # then ptxas -v, cuobjdump -sass
# Prints the path of ptxas. Needs curl and dpkg-deb; downloads 84 MB once.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools/cuda"
ptxas="$tools/usr/bin/ptxas"
if [ ! -x "$ptxas" ]; then
  source "$root/scripts/lib/debian-files.sh"
  debian_files "$tools" non-free/n/nvidia-cuda-toolkit "nvidia-cuda-toolkit_11.8.89~11.8.0-5~deb12u1_amd64.deb" \
    usr/bin/ptxas usr/bin/cuobjdump usr/bin/nvdisasm
fi
"$ptxas" --version >/dev/null
echo "$ptxas"
