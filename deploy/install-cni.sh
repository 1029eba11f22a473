#!/bin/sh
# Installs multihome's CNI executables from SRC into the CNI bin directory DEST:
#   install-cni.sh SRC DEST
# Each file is copied then renamed, so that a runtime never executes a half-written one.
# `ovn-overlay` is also installed under the names that set its default topology (`localnet`,
# `ovn-k8s-cni-overlay`), so that NADs of type ovn-k8s-cni-overlay work unchanged. On a cluster
# whose primary network is OVN-Kubernetes, DEST/ovn-k8s-cni-overlay is OVN-Kubernetes' own shim,
# which every pod needs: a file of that name that is not ours (our link to ovn-overlay, or a copy
# of it) is left in place, and said so; multihome's OVN networks then use type ovn-overlay or
# localnet.
set -eu
SRC=${1:?usage: install-cni.sh SRC DEST}
DEST=${2:?usage: install-cni.sh SRC DEST}
say() { echo "multihome install: $*"; }

mkdir -p "$DEST"
for f in bridge static whereabouts dhcp ovn-overlay; do
    cp "$SRC/$f" "$DEST/.$f.new"
    chmod 0755 "$DEST/.$f.new"
    mv -f "$DEST/.$f.new" "$DEST/$f"
    say "installed $DEST/$f"
done

# Ours: our link to ovn-overlay, or a copy of our ovn-overlay (an older install by copy).
ours() {
    [ "$(readlink "$1" 2>/dev/null)" = ovn-overlay ] && return 0
    [ -f "$1" ] && cmp -s "$1" "$DEST/ovn-overlay"
}

for n in localnet ovn-k8s-cni-overlay; do
    if [ -e "$DEST/$n" ] || [ -L "$DEST/$n" ]; then
        if ! ours "$DEST/$n"; then
            say "left $DEST/$n in place: it is not multihome's (on OVN-Kubernetes clusters it is OVN-Kubernetes' own, which its pods need); use type ovn-overlay or localnet in multihome's NADs"
            continue
        fi
    fi
    ln -sf ovn-overlay "$DEST/.$n.new"
    mv -f "$DEST/.$n.new" "$DEST/$n"
    say "installed $DEST/$n -> ovn-overlay"
done
