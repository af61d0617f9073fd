#!/usr/bin/env bash
# Install SLURM (slurmctld, slurmd, srun/sbatch clients), munge and iproute2 from the Debian mirror,
# so tests/integration/test_launchers_slurm.py (one node) and test_slurm_two_nodes.py (two nodes in
# network namespaces: ip, nsenter, unshare) can start real clusters on this machine.
#
# Idempotent and quiet: does nothing when the binaries are already there. Needs root (or sudo)
# and apt; exits 0 with a note on stderr where neither is available, and the SLURM test then
# skips with its own reason. The daemons are NOT started or enabled here: the test fixture
# (tests/integration/slurm_cluster.py) writes its own config into a temp dir and starts them.
set -euo pipefail

have_all() {
    local tool
    for tool in slurmctld slurmd sbatch munged ip nsenter unshare; do
        command -v "$tool" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 \
            || return 1
    done
}

if have_all; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_slurm.sh: apt-get not found; SLURM tests will skip" >&2
    exit 0
fi

sudo_cmd=()
if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo_cmd=(sudo -n)
    else
        echo "install_slurm.sh: not root and no passwordless sudo; SLURM tests will skip" >&2
        exit 0
    fi
fi

export DEBIAN_FRONTEND=noninteractive
# policy-rc.d keeps the packages' postinst from starting the daemons (no systemd in containers,
# and the test wants its own config); removed again on exit if we created it.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee "$policy" >/dev/null
    "${sudo_cmd[@]}" chmod 755 "$policy"
    created_policy=1
fi
cleanup() {
    if [[ "$created_policy" == 1 ]]; then
        "${sudo_cmd[@]}" rm -f "$policy"
    fi
}
trap cleanup EXIT

# Quiet: the apt output is shown only when something fails.
log="$(mktemp)"
if ! { "${sudo_cmd[@]}" apt-get update -qq \
    && "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge iproute2 util-linux; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "install_slurm.sh: apt-get failed" >&2
    exit 1
fi
rm -f "$log"

if ! have_all; then
    echo "install_slurm.sh: installation finished but SLURM binaries are missing" >&2
    exit 1
fi
